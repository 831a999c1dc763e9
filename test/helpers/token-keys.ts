// Token signing keys with self-signed certificates for tests: RSA through node-forge, EC P-256 through openssl.

import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import forge from 'node-forge';

export interface TokenKeyFixture {
  privateKeyPem: string;
  certificatePem: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/** A positive serial in minimal DER form: Go's x509 parser (registry:2) rejects anything else. */
function serialNumberHex(): string {
  const bytes = crypto.randomBytes(16);
  bytes[0] = ((bytes[0] ?? 0) & 0x3f) | 0x40;
  return bytes.toString('hex');
}

export function makeRsaTokenKey(commonName = 'registry-gateway token signer'): TokenKeyFixture {
  const keys = forge.pki.rsa.generateKeyPair({ bits: 2048, e: 0x10001 });
  const certificate = forge.pki.createCertificate();
  certificate.publicKey = keys.publicKey;
  certificate.serialNumber = serialNumberHex();
  certificate.validity.notBefore = new Date(Date.now() - DAY_MS);
  certificate.validity.notAfter = new Date(Date.now() + DAY_MS);
  const subject = [{ name: 'commonName', value: commonName }];
  certificate.setSubject(subject);
  certificate.setIssuer(subject);
  certificate.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true },
  ]);
  certificate.sign(keys.privateKey, forge.md.sha256.create());
  return {
    privateKeyPem: forge.pki.privateKeyToPem(keys.privateKey),
    certificatePem: forge.pki.certificateToPem(certificate),
  };
}

/** Made by the openssl CLI, so the EC path is also checked against PEM that node-forge did not write. */
export function makeEcTokenKey(commonName = 'registry-gateway ec token signer'): TokenKeyFixture {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'token-ec-key-'));
  try {
    const keyPath = path.join(dir, 'key.pem');
    const certPath = path.join(dir, 'cert.pem');
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', `/CN=${commonName}`],
      { stdio: 'pipe' },
    );
    return { privateKeyPem: fs.readFileSync(keyPath, 'utf8'), certificatePem: fs.readFileSync(certPath, 'utf8') };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
