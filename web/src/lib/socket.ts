// A messaging-protocol WebSocket: correlated requests, notifications by (normalised) type,
// .GetClock keepalive every 30 s, close reporting (4401/4407 = log in again).

import { Correlator, decodeFrame, encodeRequest, normType } from './protocol';

export type SocketState = 'connecting' | 'open' | 'closed';

export class MessagingSocket {
  private ws: WebSocket | null = null;
  private corr = new Correlator(20000);
  private listeners = new Map<string, Set<(body: unknown, type: string) => void>>();
  private keepalive: ReturnType<typeof setInterval> | null = null;
  state: SocketState = 'closed';
  onState: (s: SocketState, detail?: string) => void = () => {};

  constructor(private readonly url: string) {}

  open(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.state = 'connecting';
      this.onState('connecting');
      let opened = false;
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.onopen = () => {
        opened = true;
        this.state = 'open';
        this.onState('open');
        this.keepalive = setInterval(() => {
          this.request('.GetClock', {}).catch(() => {});
        }, 30000);
        resolve();
      };
      ws.onmessage = (ev) => this.handle(String(ev.data));
      ws.onerror = () => {
        if (!opened) reject(new Error('The messaging socket could not connect (the server refused it or is unreachable).'));
      };
      ws.onclose = (ev) => {
        this.state = 'closed';
        if (this.keepalive) clearInterval(this.keepalive);
        this.keepalive = null;
        this.corr.failAll('The connection closed before the server answered.');
        let detail = `closed (code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`;
        if (ev.code === 4401 || ev.code === 4407) detail = 'Your session expired; log in again.';
        this.onState('closed', detail);
        if (!opened) reject(new Error(`The messaging socket closed during connect (code ${ev.code}).`));
      };
    });
  }

  close(): void {
    if (this.ws && this.ws.readyState <= 1) this.ws.close(1000, 'bye');
  }

  on(type: string, fn: (body: unknown, type: string) => void): () => void {
    const key = normType(type);
    let set = this.listeners.get(key);
    if (!set) this.listeners.set(key, (set = new Set()));
    set.add(fn);
    return () => set!.delete(fn);
  }

  request<T = unknown>(
    type: string,
    body?: unknown,
    extra: { headers?: unknown[]; metadata?: unknown[] } = {},
  ): Promise<T> {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error('Not connected. Reconnect and try again.'));
    }
    const id = this.corr.nextId();
    const p = this.corr.track(id, type) as Promise<T>;
    this.ws.send(encodeRequest(id, type, body, extra));
    return p;
  }

  private handle(text: string): void {
    const d = decodeFrame(text);
    if (d.kind === 'resp') {
      this.corr.settle(d);
      // Some responses double as data (QueryMessages$Response); let listeners see them too.
      this.emit(d.type, d.body);
    } else if (d.kind === 'notification') {
      this.emit(d.type, d.body);
    }
  }

  private emit(type: string, body: unknown): void {
    const key = normType(type);
    for (const fn of this.listeners.get(key) ?? []) {
      try {
        fn(body, type);
      } catch (e) {
        console.error('listener failed', e);
      }
    }
  }
}
