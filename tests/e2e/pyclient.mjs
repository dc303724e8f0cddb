// A WebRTC client script run as a child process (tests/python/aiortc_client.py,
// tests/python/gst_client.py): it prints one JSON object per line as it progresses; closing its
// stdin asks it to stop (a publisher then DELETEs its session).

import { spawn } from 'node:child_process';

/** A running client script: its JSON progress lines and exit. */
export class PyClient {
  /** Starts `python script ...args`. */
  constructor(python, script, args) {
    this.events = [];
    this.stderr = '';
    this.proc = spawn(python, [script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let partial = '';
    this.proc.stdout.on('data', (d) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop();
      for (const l of lines) {
        try { this.events.push(JSON.parse(l)); } catch { this.events.push({ event: 'text', text: l }); }
      }
    });
    this.proc.stderr.on('data', (d) => { this.stderr = (this.stderr + d.toString()).slice(-4000); });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code) => resolve(code)));
  }

  /** The first progress line of kind `event`. */
  find(event) {
    return this.events.find((e) => e.event === event);
  }

  /** Exit code, or a rejection after `ms`. */
  async exit(ms) {
    let timer;
    const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`client did not exit within ${ms} ms`)), ms); });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes stdin (a publisher then DELETEs its session) and waits, then kills. */
  async stop() {
    this.proc.stdin.end();
    await this.exit(10000).catch(() => this.proc.kill('SIGKILL'));
  }

  /** Progress lines and the end of stderr, for failure messages. */
  describe() {
    return `events: ${JSON.stringify(this.events)}\nstderr: ${this.stderr}`;
  }
}
