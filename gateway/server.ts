// The gateway process: one node:http server whose /fn/ requests take the lean invoke path and
// whose other requests go to the hono control API; graceful shutdown lets in-flight requests
// finish, then stops every guest.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import type { Logger } from '../core/log.js';
import { platformConfig, type PlatformConfig } from '../core/config.js';
import type { Clock } from '../core/clock.js';
import { Platform } from './platform.js';
import { createApi } from './api.js';
import { createInvokeHandler } from './invoke.js';

export interface GatewayOptions {
  config?: Partial<PlatformConfig>;
  token: string;
  log: Logger;
  clock?: Clock;
}

export class Gateway {
  readonly platform: Platform;
  readonly config: PlatformConfig;
  private readonly server: http.Server;
  private readonly log: Logger;
  private closing: Promise<void> | undefined;

  constructor(options: GatewayOptions) {
    this.config = platformConfig(options.config);
    this.log = options.log;
    this.platform = new Platform(this.config, {
      log: options.log,
      ...(options.clock ? { clock: options.clock } : {}),
    });
    const invoke = createInvokeHandler(this.platform, this.platform.metrics, this.config.maxBodyBytes);
    const api = getRequestListener(createApi({ platform: this.platform, token: options.token, log: options.log, baseUrl: () => this.url }).fetch);
    this.server = http.createServer({ keepAliveTimeout: 5000 }, (req, res) => {
      if (req.url!.startsWith('/fn/')) invoke(req, res);
      else void api(req, res);
    });
  }

  async listen(): Promise<string> {
    await this.platform.start();
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.config.port, this.config.host, () => {
        this.server.off('error', reject);
        resolve(this.url);
      });
    });
  }

  get url(): string {
    const addr = this.server.address() as AddressInfo | null;
    const host = this.config.host.includes(':') ? `[${this.config.host}]` : this.config.host;
    return `http://${host}:${addr ? addr.port : this.config.port}`;
  }

  /** Stop accepting, let in-flight requests finish (within the grace period), stop every guest. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      this.server.closeIdleConnections();
      const grace = setTimeout(() => this.server.closeAllConnections(), this.config.shutdownGraceMs);
      await closed;
      clearTimeout(grace);
      await this.platform.shutdown();
      this.log.info('gateway stopped');
    })();
    return this.closing;
  }
}
