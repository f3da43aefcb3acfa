// `npm run schema`: writes load/report/schema.json, the JSON Schema of the load report, from the
// zod schema (a unit test keeps the committed file equal to it).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../processes.js';
import { reportJsonSchema } from './schema.js';

/** The file's exact text. */
export function schemaText(): string {
  return JSON.stringify(reportJsonSchema(), null, 2) + '\n';
}

export const schemaFile = path.join(repoRoot, 'load/report/schema.json');

if (process.argv[1] && path.resolve(process.argv[1]).endsWith(path.join('load', 'report', 'write-schema.js'))) {
  writeFileSync(schemaFile, schemaText());
  console.log(`wrote ${path.relative(process.cwd(), schemaFile)}`);
}
