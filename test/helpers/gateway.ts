// An in-process gateway on a free port with a throwaway data folder, for integration tests with
// real microVMs: deploy a file from the repo, call it over HTTP, close and clean up.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { Gateway } from '../../gateway/server.js';
import { silentLogger } from '../../core/log.js';
import type { PlatformConfig } from '../../core/config.js';
import { packageFunction } from '../../functions/package.js';
import { repoRoot } from './platform.js';

export class TestGateway {
  readonly dataDir = mkdtempSync(path.join(tmpdir(), 'fnctl-it-'));
  readonly gateway: Gateway;
  url = '';

  constructor(config: Partial<PlatformConfig> = {}) {
    this.gateway = new Gateway({ config: { port: 0, dataDir: this.dataDir, ...config }, token: 'test-token-0123456789abcdef', log: silentLogger() });
  }

  get platform() {
    return this.gateway.platform;
  }

  async start(): Promise<this> {
    this.url = await this.gateway.listen();
    return this;
  }

  async http(pathname: string, options: Parameters<typeof request>[1] = {}) {
    const res = await request(this.url + pathname, options);
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) };
  }

  /** Deploy FILE (relative to the repo root) as NAME. */
  async deploy(name: string, file: string, settings: Record<string, unknown> = {}) {
    const pkg = await packageFunction(path.join(repoRoot, file));
    return this.gateway.platform.deploy({ name, bundle: pkg.bundle, settings });
  }

  async close(): Promise<void> {
    await this.gateway.close();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
