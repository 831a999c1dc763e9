// Request smuggling: raw TLS carriers of many shapes reach the registry as exactly the request the gateway parsed, or not at all; the web pages' forms refuse them too.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { carriers, chunked, filler } from '../helpers/carriers.js';
import { fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawExchange } from '../helpers/raw-tls.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.js';
import { RegistryApi } from '../helpers/registry-api.js';
import { GatewayBrowser } from '../helpers/sign-in.js';
import { csrfOf } from '../helpers/ui-pages.js';

const access = `
rules:
  - users: [anonymous, authenticated]
    repositories: ["public/**"]
    actions: [pull]
  - users: [alice]
    repositories: ["alice/**"]
    actions: ["*"]
`;
const users = { alice: 'alice-password' };
const victimDigest = `sha256:${'d'.repeat(64)}`;

async function anonymousToken(gw: TestGateway, ...scopes: string[]): Promise<string> {
  const res = await request(gw, 'GET', `/token?service=registry-gateway${scopes.map((scope) => `&scope=${scope}`).join('')}`);
  assert.equal(res.status, 200, res.body);
  return res.json().token as string;
}

/**
 * The carrier's expected answer. Node's own parser refuses some shapes (CL with TE, obs-fold,
 * duplicates) before the gateway sees them; over TLS its 400 may be cut off by the close.
 */
function assertAnswered(statuses: number[], carrier: { name: string; status: number; methods: string[] }): void {
  if (carrier.status === 400 && statuses.length === 0) return;
  assert.deepEqual(statuses, carrier.methods.map(() => carrier.status), carrier.name);
}

describe('request framing, seen on a recording upstream', () => {
  let upstream: RecordingUpstream;
  let gw: TestGateway;
  let anonymous: string;
  let alice: string;

  before(async () => {
    upstream = await startRecordingUpstream();
    gw = await startTestGateway({ upstream: upstream.url, users, access });
    anonymous = await anonymousToken(gw, 'repository:public/base:pull', 'repository:public/control:pull');
    alice = await fetchToken(gw, 'alice', 'alice-password', ['repository:alice/x:pull,push']);
  });
  after(async () => {
    await gw?.close();
    await upstream?.close();
  });

  /** What reached the upstream because of `send`: a control request afterwards marks the end. */
  const arrivals = async (send: () => Promise<unknown>): Promise<string[]> => {
    const start = upstream.requests.length;
    await send();
    const control = await request(gw, 'GET', '/v2/public/control/tags/list', { headers: { Authorization: `Bearer ${anonymous}` } });
    assert.equal(control.status, 200);
    const seen = upstream.requests.slice(start).map((r) => `${r.method} ${r.target}`);
    assert.equal(seen.at(-1), 'GET /v2/public/control/tags/list');
    return seen.slice(0, -1);
  };

  const smuggled = `DELETE /v2/alice/victim/manifests/${victimDigest} HTTP/1.1\r\nHost: registry\r\nContent-Length: 0\r\n\r\n`;
  for (const carrier of carriers('localhost', 'TOKEN', '/v2/public/base/tags/list', smuggled)) {
    test(`${carrier.name}: ${carrier.upstream.length === 0 ? `refused with ${carrier.status}, nothing forwarded` : 'forwarded as parsed'}`, async () => {
      let statuses: number[] = [];
      const seen = await arrivals(async () => {
        const answer = await rawExchange(gw, carrier.bytes.replaceAll('localhost', gw.host).replaceAll('TOKEN', anonymous), { methods: carrier.methods });
        statuses = answer.statuses;
      });
      assertAnswered(statuses, carrier);
      assert.deepEqual(seen, carrier.upstream);
    });
  }

  test('the same carriers on /token are refused before any login is tried', async () => {
    for (const carrier of carriers(gw.host, anonymous, '/token?service=registry-gateway', smuggled).filter((c) => c.status === 431)) {
      const answer = await rawExchange(gw, carrier.bytes, { methods: carrier.methods });
      assertAnswered(answer.statuses, carrier);
    }
  });

  test('an upload body holding a request is sent as a body, framed by the gateway, both ways', async () => {
    const head = (framing: string) =>
      `PATCH /v2/alice/x/blobs/uploads/u1?_state=s HTTP/1.1\r\nHost: ${gw.host}\r\nAuthorization: Bearer ${alice}\r\nContent-Type: application/x-www-form-urlencoded\r\n${framing}\r\n`;
    for (const bytes of [
      `${head(`Content-Length: ${smuggled.length}\r\n`)}${smuggled}`,
      `${head('Transfer-Encoding: chunked\r\n')}${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`,
    ]) {
      const start = upstream.requests.length;
      const seen = await arrivals(async () => assert.deepEqual((await rawExchange(gw, bytes, { methods: ['PATCH'] })).statuses, [200]));
      assert.deepEqual(seen, ['PATCH /v2/alice/x/blobs/uploads/u1?_state=s']);
      const patch = upstream.requests[start]!;
      assert.equal(patch.body.toString('latin1'), smuggled);
      assert.deepEqual(upstream.header(patch, 'content-type'), ['application/octet-stream']);
    }
  });

  test('the registry sees only the headers it reads, plus the forwarding headers the gateway sets', async () => {
    const start = upstream.requests.length;
    const bytes =
      `GET /v2/public/base/manifests/latest HTTP/1.1\r\nHost: ${gw.host}\r\nAuthorization: Bearer ${anonymous}\r\n` +
      'Accept: application/vnd.oci.image.manifest.v1+json\r\nAccept: application/vnd.docker.distribution.manifest.v2+json\r\n' +
      'If-None-Match: "x"\r\nUser-Agent: test\r\nCookie: a=b\r\nForwarded: host=evil\r\nX-Forwarded-Host: evil\r\nX-Custom: 1\r\nConnection: keep-alive, X-Custom\r\n' +
      'Proxy-Authorization: Basic x\r\nExpect: 100-continue\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n';
    assert.deepEqual((await rawExchange(gw, bytes)).statuses, [200]);
    const seen = upstream.requests[start]!;
    const names = [...new Set(seen.headers.map(([name]) => name))].sort();
    assert.deepEqual(names, ['accept', 'connection', 'host', 'if-none-match', 'user-agent', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto']);
    assert.deepEqual(upstream.header(seen, 'accept'), ['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json']);
    assert.deepEqual(upstream.header(seen, 'x-forwarded-host'), [gw.host]);
    assert.deepEqual(upstream.header(seen, 'connection'), ['keep-alive']);
  });

  test('a header the registry reads, given twice, is refused', async () => {
    for (const name of ['Range', 'If-None-Match', 'User-Agent', 'Content-Type']) {
      const bytes = `GET /v2/public/base/blobs/${victimDigest} HTTP/1.1\r\nHost: ${gw.host}\r\nAuthorization: Bearer ${anonymous}\r\n${name}: a\r\n${name}: b\r\n\r\n`;
      const seen = await arrivals(async () => assert.deepEqual((await rawExchange(gw, bytes)).statuses, [400], name));
      assert.deepEqual(seen, [], name);
    }
  });
});

describe('request smuggling against the real registry', () => {
  let gw: TestGateway;
  let api: RegistryApi;
  let victim: { body: Buffer; digest: string };
  let anonymous: string;

  before(async () => {
    gw = await startTestGateway({ users, access });
    api = new RegistryApi(gw, await fetchToken(gw, 'alice', 'alice-password', ['repository:alice/victim:pull,push,delete', 'repository:public/base:pull,push']));
    victim = await api.makeManifest('alice/victim', 'the victim');
    assert.equal((await api.putManifest('alice/victim', 'latest', victim.body)).status, 201);
    anonymous = await anonymousToken(gw, 'repository:public/base:pull');
  });
  after(async () => {
    await gw?.close();
  });

  test('an anonymous caller allowed only public/** can neither delete nor read alice/victim through any carrier', async () => {
    const smuggles = [
      `DELETE /v2/alice/victim/manifests/${victim.digest} HTTP/1.1\r\nHost: registry\r\nContent-Length: 0\r\n\r\n`,
      `GET /v2/alice/victim/manifests/latest HTTP/1.1\r\nHost: registry\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n\r\n`,
      // An open head: whatever the registry answers next on that connection would go to someone else.
      `GET /v2/alice/victim/manifests/latest HTTP/1.1\r\nHost: registry\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\nX-Open: `,
    ];
    for (const smuggled of smuggles) {
      for (const carrier of carriers(gw.host, anonymous, '/v2/public/base/tags/list', smuggled)) {
        const answer = await rawExchange(gw, carrier.bytes, { methods: carrier.methods });
        assert.ok(!answer.text.includes('the victim'), `${carrier.name}: the answer holds alice/victim's manifest`);
        // Later requests on the gateway's registry connections get their own answers, not a smuggled one's.
        for (let i = 0; i < 3; i++) {
          const next = await request(gw, 'GET', '/v2/public/base/tags/list', { headers: { Authorization: `Bearer ${anonymous}` } });
          assert.ok(!next.body.includes('the victim'), `${carrier.name}: a later answer holds alice/victim's manifest`);
          assert.equal(next.status, 404, `${carrier.name}: ${next.body}`);
          assert.equal(next.json().errors[0].code, 'NAME_UNKNOWN');
        }
        assert.equal(await api.digestOf('alice/victim', 'latest'), victim.digest, `${carrier.name} deleted alice/victim`);
      }
    }
  });

  test("the web pages' forms (sign-in, delete) refuse ambiguous framing before reading the form; the same delete well framed works", async () => {
    const browser = new GatewayBrowser(gw);
    const signInForm = await browser.get('/sign-in');
    const signedIn = await browser.post('/sign-in', { user: 'alice', password: 'alice-password', csrf: csrfOf(signInForm.body) });
    assert.equal(signedIn.status, 303, signedIn.body);
    const target = '/r/alice/victim/-/tags/latest/delete';
    const confirm = await browser.get(target);
    assert.equal(confirm.status, 200, confirm.body);
    const form = `csrf=${csrfOf(confirm.body)}`;
    const smuggled = `DELETE /v2/alice/victim/manifests/${victim.digest} HTTP/1.1\r\nHost: ${gw.host}\r\nContent-Length: 0\r\n\r\n`;
    const head = (path: string, lines: string) =>
      `POST ${path} HTTP/1.1\r\nHost: ${gw.host}\r\nCookie: ${browser.cookieHeader(path)}\r\nOrigin: ${gw.url}\r\nSec-Fetch-Site: same-origin\r\nContent-Type: application/x-www-form-urlencoded\r\n${lines}`;
    const shapes: Array<[string, (path: string, body: string) => string, number]> = [
      ['Content-Length and Transfer-Encoding', (p, body) => `${head(p, `Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n`)}\r\n${chunked(body + smuggled)}`, 400],
      ['Transfer-Encoding: chunked, identity', (p, body) => `${head(p, 'Transfer-Encoding: chunked, identity\r\n')}\r\n${chunked(body)}${smuggled}`, 400],
      ['Transfer-Encoding folded', (p, body) => `${head(p, 'Transfer-Encoding:\r\n chunked\r\n')}\r\n${chunked(body)}${smuggled}`, 400],
      ['Content-Length twice, differing', (p, body) => `${head(p, `Content-Length: ${body.length}\r\nContent-Length: ${body.length + smuggled.length}\r\n`)}\r\n${body}${smuggled}`, 400],
      ['Content-Length after 1,100 header lines', (p, body) => `${head(p, filler)}Content-Length: ${body.length}\r\n\r\n${body}${smuggled}`, 431],
    ];
    for (const [name, bytesOf, status] of shapes) {
      for (const [path, body] of [[target, form], ['/sign-in', `user=alice&password=alice-password&${form}`]] as const) {
        const answer = await rawExchange(gw, bytesOf(path, body), { methods: ['POST'] });
        // Node refuses some shapes itself; over TLS its 400 may be cut off by the close.
        if (answer.statuses.length > 0) assert.deepEqual(answer.statuses, [status], `${name} on ${path}`);
        assert.ok(!answer.statuses.includes(303), `${name} on ${path} was acted on`);
        assert.equal(await api.digestOf('alice/victim', 'latest'), victim.digest, `${name} on ${path} deleted alice/victim`);
      }
    }
    // The control: the same form, framed plainly, does delete; so the refusals above came from the framing.
    const plain = await rawExchange(gw, `${head(target, `Content-Length: ${form.length}\r\n`)}\r\n${form}`, { methods: ['POST'] });
    assert.deepEqual(plain.statuses, [303], plain.text.slice(0, 300));
    assert.equal(await api.digestOf('alice/victim', 'latest'), undefined, 'the well-framed delete took the tag away');
  });
});
