// TLS offered by the gateway: Mozilla "intermediate" (forward-secret AEAD suites on TLS 1.2, TLS 1.3), before and after a reload.
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { runCommand } from '../helpers/clients.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

/** Suites Node offers by default that the gateway must refuse: static RSA key exchange, CBC with SHA-1/SHA-2. */
const refused = ['AES128-SHA', 'AES256-GCM-SHA384', 'AES128-GCM-SHA256', 'ECDHE-RSA-AES128-SHA', 'ECDHE-RSA-AES256-SHA384', 'AES256-SHA256'];
const accepted = ['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305'];

/** Resolves with the negotiated protocol and suite, or rejects with the handshake error. */
function handshake(gw: TestGateway, options: tls.ConnectionOptions): Promise<{ protocol: string | null; cipher: string }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: gw.gateway.port, servername: 'localhost', ca: gw.ca, ...options }, () => {
      const result = { protocol: socket.getProtocol(), cipher: socket.getCipher().standardName };
      socket.end();
      resolve(result);
    });
    socket.on('error', reject);
  });
}

function checkPolicy(gw: () => TestGateway): void {
  for (const cipher of refused) {
    test(`TLS 1.2 with ${cipher} only is refused`, async () => {
      await assert.rejects(handshake(gw(), { maxVersion: 'TLSv1.2', ciphers: cipher }), /handshake failure|no shared cipher/i);
    });
  }
  for (const cipher of accepted) {
    test(`TLS 1.2 with ${cipher} is accepted`, async () => {
      const result = await handshake(gw(), { maxVersion: 'TLSv1.2', ciphers: cipher });
      assert.equal(result.protocol, 'TLSv1.2');
    });
  }
  test("the server's order decides: AES-128-GCM over a client's AES-256-GCM, ChaCha20 for a client listing it first", async () => {
    const aesFirst = 'TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256';
    assert.equal((await handshake(gw(), { minVersion: 'TLSv1.3', ciphers: aesFirst })).cipher, 'TLS_AES_128_GCM_SHA256');
    assert.equal((await handshake(gw(), { minVersion: 'TLSv1.3', ciphers: 'TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256' })).cipher, 'TLS_CHACHA20_POLY1305_SHA256');
    const tls12 = { maxVersion: 'TLSv1.2' } as const;
    assert.equal((await handshake(gw(), { ...tls12, ciphers: 'ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256' })).cipher, 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256');
    assert.equal((await handshake(gw(), { ...tls12, ciphers: 'ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256' })).cipher, 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256');
  });
  test('TLS 1.3 is accepted; TLS 1.1 is refused', async () => {
    assert.equal((await handshake(gw(), {})).protocol, 'TLSv1.3');
    await assert.rejects(handshake(gw(), { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' }));
  });
}

describe('TLS suites of the gateway', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway();
  });
  after(() => gw?.close());

  describe('as started', () => checkPolicy(() => gw));

  test('openssl s_client: RSA key exchange and CBC refused, ECDHE with GCM accepted', async () => {
    const sClient = (cipher: string) =>
      runCommand('openssl', ['s_client', '-connect', `127.0.0.1:${gw.gateway.port}`, '-servername', 'localhost', '-tls1_2', '-cipher', cipher, '-CAfile', `${gw.certDir}/ca.crt`, '-verify_return_error'], { label: `openssl s_client ${cipher}`, stdin: '' });
    await assert.rejects(sClient('AES128-SHA'), /handshake failure|alert/);
    await assert.rejects(sClient('ECDHE-RSA-AES128-SHA'), /handshake failure|alert/);
    const { stdout } = await sClient('ECDHE-RSA-AES128-GCM-SHA256');
    assert.match(stdout, /Cipher is ECDHE-RSA-AES128-GCM-SHA256/);
  });

  describe('after a reload (SIGHUP) with the same certificate', () => {
    before(() => gw.gateway.reload());
    checkPolicy(() => gw);
  });
});
