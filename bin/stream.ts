// `fnctl logs --follow`: read the platform's ndjson log stream line by line until interrupted.
import { request } from 'undici';
import { CliError, type Target } from './client.js';

export async function streamLines(target: Target, pathname: string, onLine: (line: string) => void): Promise<void> {
  const res = await request(target.url + pathname, {
    headers: { authorization: `Bearer ${target.token}` },
    bodyTimeout: 0,
  }).catch((err: NodeJS.ErrnoException) => {
    throw new CliError(`cannot reach the platform at ${target.url} (${err.code ?? err.message}): is \`fnctl up\` running?`);
  });
  if (res.statusCode >= 400) {
    const text = await res.body.text();
    throw new CliError(`the platform answered ${res.statusCode}: ${text.slice(0, 300)}`);
  }
  let rest = '';
  for await (const chunk of res.body) {
    rest += (chunk as Buffer).toString('utf8');
    let nl: number;
    while ((nl = rest.indexOf('\n')) >= 0) {
      onLine(rest.slice(0, nl));
      rest = rest.slice(nl + 1);
    }
  }
  if (rest) onLine(rest);
}
