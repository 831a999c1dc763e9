// Tests for reading the Authorization header: none, Basic, Bearer, and every malformed form told apart.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readAuthorization, type PresentedCredentials } from '../src/auth/credentials.js';

const base64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');
const basic = (user: string, password: string): PresentedCredentials => ({ kind: 'basic', credentials: { user, password } });
const jwtLike = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXdpdGgtXy1hbmQt';
const maxLength = 16 * 1024;

describe('readAuthorization: accepted headers', () => {
  const cases: [header: string | undefined, expected: PresentedCredentials][] = [
    [undefined, { kind: 'none' }],
    ['', { kind: 'none' }],
    [`Basic ${base64(':')}`, { kind: 'none' }],
    [`Basic ${base64('alice:secret')}`, basic('alice', 'secret')],
    [`basic ${base64('alice:secret')}`, basic('alice', 'secret')],
    [`BASIC ${base64('alice:secret')}`, basic('alice', 'secret')],
    [`Basic   ${base64('alice:secret')}  `, basic('alice', 'secret')],
    [`Basic ${base64('alice:pa:ss:word')}`, basic('alice', 'pa:ss:word')],
    [`Basic ${base64('alice:')}`, basic('alice', '')],
    [`Basic ${base64('alice: spaced out ')}`, basic('alice', ' spaced out ')],
    [`Basic ${base64('jürgen:pässwörd€')}`, basic('jürgen', 'pässwörd€')],
    [`Basic ${base64('alice:pw?')}`, basic('alice', 'pw?')],
    [`Bearer ${jwtLike}`, { kind: 'bearer', token: jwtLike }],
    [`bearer ${jwtLike}`, { kind: 'bearer', token: jwtLike }],
    [`BEARER ${jwtLike}`, { kind: 'bearer', token: jwtLike }],
    ['Bearer abc+/=~-_.xyz', { kind: 'bearer', token: 'abc+/=~-_.xyz' }],
    [`Bearer ${'a'.repeat(maxLength - 'Bearer '.length)}`, { kind: 'bearer', token: 'a'.repeat(maxLength - 'Bearer '.length) }],
  ];
  for (const [header, expected] of cases) {
    const label = header === undefined ? 'no header' : JSON.stringify(header.slice(0, 50));
    it(`${label} -> ${expected.kind}`, () => {
      assert.deepEqual(readAuthorization(header), expected);
    });
  }
});

describe('readAuthorization: malformed headers', () => {
  const cases: [header: string, why: string][] = [
    ['Basic !!!not-base64!!!', 'malformed base64'],
    ['Basic YWxpY2U6c2VjcmV0=====', 'too much padding'],
    ['Basic YWxp Y2U6', 'base64 with a space inside'],
    [`Basic ${base64('alice')}`, 'no colon between user and password'],
    [`Basic ${base64(':secret')}`, 'an empty user'],
    ['Basic', 'Basic without a value'],
    ['Basic ', 'Basic with an empty value'],
    ['Digest username="alice", realm="r"', 'an unknown scheme (Digest)'],
    ['Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1MIIGcaADAgEF', 'an unknown scheme (Negotiate)'],
    [base64('alice:secret'), 'credentials without a scheme'],
    [' Basic ' + base64('alice:secret'), 'a leading space before the scheme'],
    ['Basic\t' + base64('alice:secret'), 'a tab instead of a space'],
    ['Bearer', 'Bearer without a token'],
    ['Bearer ', 'Bearer with an empty token'],
    ['Bearer two tokens', 'a token with a space'],
    ['Bearer "quoted"', 'a quoted token'],
    ['Bearer tok\u00e9n', 'a non-ASCII token'],
    [`Bearer ${'a'.repeat(maxLength)}`, 'a huge bearer token'],
    [`Basic ${base64(`alice:${'x'.repeat(maxLength)}`)}`, 'a huge Basic value'],
    ['X'.repeat(1024 * 1024), 'a 1 MiB header'],
  ];
  for (const [header, why] of cases) {
    it(`reads ${why} as malformed, keeping nothing of it`, () => {
      assert.deepEqual(readAuthorization(header), { kind: 'malformed' });
    });
  }
});
