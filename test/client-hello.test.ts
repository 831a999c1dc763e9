// The ClientHello reader that tells ACME tls-alpn-01 validators from clients: real hellos from Node's TLS, and hostile bytes.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { firstRecordLength, parseClientHello } from '../src/tls/client-hello.js';

/** The first bytes a TLS client sends, captured by a plain TCP server that never answers. */
async function captureHello(options: tls.ConnectionOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => {
      let seen = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        seen = Buffer.concat([seen, chunk]);
        const length = firstRecordLength(seen);
        if (length !== undefined && seen.length >= length) {
          socket.destroy();
          server.close();
          resolve(seen);
        }
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      const client = tls.connect({ host: '127.0.0.1', port, ...options });
      client.on('error', () => undefined);
      setTimeout(() => reject(new Error('no hello')), 5000).unref();
    });
  });
}

describe('ClientHello', () => {
  it('reads the server name and the ALPN protocols a validator offers', async () => {
    const hello = await captureHello({ servername: 'Gateway.Example.Test', ALPNProtocols: ['acme-tls/1'] });
    assert.deepEqual(parseClientHello(hello), { serverName: 'gateway.example.test', protocols: ['acme-tls/1'] });
  });

  it('reads an ordinary client hello: its protocols in order, and no name when none was sent', async () => {
    const hello = await captureHello({ ALPNProtocols: ['h2', 'http/1.1'] });
    assert.deepEqual(parseClientHello(hello), { protocols: ['h2', 'http/1.1'] });
    const bare = await captureHello({ servername: 'registry.example.test' });
    assert.deepEqual(parseClientHello(bare), { serverName: 'registry.example.test', protocols: [] });
  });

  it('gives up on truncated, lying or random bytes without throwing', async () => {
    const hello = await captureHello({ servername: 'a.example.test', ALPNProtocols: ['acme-tls/1'] });
    for (let cut = 0; cut < hello.length; cut += 7) assert.equal(parseClientHello(hello.subarray(0, cut)), undefined, `cut at ${cut}`);
    // A length field inside the hello that points past its end.
    const lying = Buffer.from(hello);
    lying.writeUInt16BE(0xffff, hello.length - 4);
    assert.doesNotThrow(() => parseClientHello(lying));
    for (let i = 0; i < 2000; i += 1) {
      const noise = randomBytes(5 + (i % 300));
      noise[0] = 0x16;
      noise.writeUInt16BE(noise.length - 5, 3);
      assert.doesNotThrow(() => parseClientHello(noise));
    }
  });

  it('is not fooled by a plain HTTP request or another record type', () => {
    assert.equal(parseClientHello(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), undefined);
    assert.equal(firstRecordLength(Buffer.from([0x17, 3, 3, 0, 4, 1, 2, 3, 4])), undefined);
  });
});
