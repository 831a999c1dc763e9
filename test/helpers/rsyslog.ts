// A private rsyslogd for tests: a unix socket and a UDP port on loopback, every message written raw (as it arrived) to one file.

import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface Rsyslog {
  /** The unix datagram socket it reads (what /dev/log is to a system syslog). */
  socket: string;
  udpPort: number;
  /** Every message received so far, one per line, as sent (RFC 5424 header and all). */
  messages(): Promise<string[]>;
  /** The first message matching, once it has arrived. */
  waitFor(match: (message: string) => boolean): Promise<string>;
  /** Stops the daemon (its socket goes with it) and starts it again on the same socket when `resume` is called. */
  pause(): Promise<{ resume(): Promise<void> }>;
  stop(): Promise<void>;
}

function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      const { port } = socket.address();
      socket.close(() => resolve(port));
    });
  });
}

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const found = await probe();
    if (found !== undefined) return found;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`rsyslogd: ${what}`);
}

export async function startRsyslog(): Promise<Rsyslog> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rsyslog-test-'));
  const socket = path.join(dir, 'log.sock');
  const output = path.join(dir, 'messages');
  const udpPort = await freeUdpPort();
  await writeFile(
    path.join(dir, 'rsyslog.conf'),
    [
      `global(workDirectory="${dir}" maxMessageSize="64k")`,
      'module(load="imuxsock" SysSock.Use="off")',
      `input(type="imuxsock" Socket="${socket}")`,
      'module(load="imudp")',
      `input(type="imudp" address="127.0.0.1" port="${udpPort}")`,
      'template(name="raw" type="string" string="%rawmsg%\\n")',
      `*.* action(type="omfile" file="${output}" template="raw")`,
      '',
    ].join('\n'),
  );
  let stderr = '';
  const daemon = (): ChildProcess => {
    const started = spawn('rsyslogd', ['-n', '-f', path.join(dir, 'rsyslog.conf'), '-i', path.join(dir, 'rsyslogd.pid')], { stdio: ['ignore', 'ignore', 'pipe'] });
    started.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    return started;
  };
  let child = daemon();
  const messages = async () => (await readFile(output, 'utf8').catch(() => '')).split('\n').filter((line) => line.length > 0);
  const end = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
  };
  const stop = async () => {
    await end();
    await rm(dir, { recursive: true, force: true });
  };
  const socketReady = () => until(`no socket at ${socket}: ${stderr}`, async () => (existsSync(socket) ? true : undefined));
  try {
    await socketReady();
    // The UDP input is up once a probe sent there has been written.
    const probe = createSocket('udp4');
    try {
      await until(`UDP ${udpPort} not answering: ${stderr}`, async () => {
        probe.send('<13>1 - - probe - - - rsyslog-test-ready', udpPort, '127.0.0.1');
        return (await messages()).some((line) => line.includes('rsyslog-test-ready')) ? true : undefined;
      });
    } finally {
      probe.close();
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    socket,
    udpPort,
    messages,
    waitFor: (match) => until('no message matched', async () => (await messages()).find(match)),
    async pause() {
      await end();
      await until('the socket is gone with the daemon', async () => (existsSync(socket) ? undefined : true));
      return {
        async resume() {
          child = daemon();
          await socketReady();
        },
      };
    },
    stop,
  };
}
