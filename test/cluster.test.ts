// The cluster's messages: what crosses the IPC channel is checked, workers share one state through the primary, ACME challenges and certificates reach every worker.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AcmeFromPrimary, ClusterChallenges } from '../src/cluster/acme-share.js';
import { answerStateCall, IpcSharedState, type PrimaryChannel } from '../src/cluster/ipc-state.js';
import { ClusterLocks, LockHub } from '../src/cluster/lock-share.js';
import { RegistryError } from '../src/errors.js';
import { parsePrimaryMessage, parseWorkerMessage, type ChallengeChange, type PrimaryMessage, type WorkerMessage } from '../src/cluster/messages.js';
import { InProcessSharedState, noticeChannels } from '../src/state/shared-state.js';
import { AcmeChallenges } from '../src/tls/acme/challenges.js';

/** Through JSON, as node:cluster's IPC carries it. */
const overIpc = <T>(message: T): unknown => JSON.parse(JSON.stringify(message));

/** A primary holding one InProcessSharedState, and workers whose calls reach it over a JSON channel. */
function cluster(workerCount: number) {
  const hub = new InProcessSharedState();
  const workers: IpcSharedState[] = [];
  const deliver = (message: PrimaryMessage) => {
    for (const worker of workers) worker.receive(parsePrimaryMessage(overIpc(message))!);
  };
  for (const channel of noticeChannels) hub.subscribe(channel, (message) => deliver({ type: 'gateway:notice', channel, message }));
  for (let i = 0; i < workerCount; i++) {
    let worker: IpcSharedState;
    const channel: PrimaryChannel = {
      connected: true,
      send: (sent: WorkerMessage) => {
        const message = parseWorkerMessage(overIpc(sent));
        assert.ok(message?.type === 'gateway:state-call', `a call the primary takes: ${JSON.stringify(sent)}`);
        setImmediate(async () => worker.receive(parsePrimaryMessage(overIpc(await answerStateCall(hub, message.id, message.call)))!));
      },
    };
    worker = new IpcSharedState(channel);
    workers.push(worker);
  }
  return { hub, workers };
}

describe('cluster messages', () => {
  it('takes the messages of the protocol and ignores anything else on the channel', () => {
    assert.deepEqual(parseWorkerMessage({ type: 'gateway:hello' }), { type: 'gateway:hello' });
    assert.equal(parseWorkerMessage({ type: 'prom-client:getMetricsRes', requestId: 1, metrics: [] }), undefined);
    assert.equal(parseWorkerMessage('gateway:hello'), undefined);
    assert.equal(parseWorkerMessage(null), undefined);
    assert.equal(parsePrimaryMessage({ type: 'gateway:reload' }), undefined, 'a reload names its request');
    assert.deepEqual(parsePrimaryMessage({ type: 'gateway:stop' }), { type: 'gateway:stop' });
  });

  it('lets a worker call only the state methods that take plain data, with the arguments they take', () => {
    const call = (method: string, args: unknown[]) => parseWorkerMessage({ type: 'gateway:state-call', id: 1, call: { method, args } });
    assert.ok(call('addCount', ['throttle:k', 60_000]));
    assert.ok(call('addCount', ['throttle:k', 60_000, -1]), 'one taken back');
    assert.equal(call('addCount', ['throttle:k', 60_000, 5]), undefined, 'one at a time');
    assert.ok(call('set', ['maintenance', null]), 'null removes a value');
    assert.equal(call('close', []), undefined);
    assert.equal(call('subscribe', ['revocations']), undefined);
    assert.equal(call('addCount', ['throttle:k', -1]), undefined);
    assert.equal(call('addCount', ['throttle:k']), undefined);
    assert.equal(call('publish', ['elsewhere', 'x']), undefined, 'only the known channels');
    assert.equal(parseWorkerMessage({ type: 'gateway:state-call', id: -1, call: { method: 'readCount', args: ['k'] } }), undefined);
  });
});

describe('IpcSharedState', () => {
  it('counts failures once for all workers: what one adds, the other reads', async () => {
    const { workers } = cluster(2);
    const [first, second] = workers as [IpcSharedState, IpcSharedState];
    assert.equal(await first.addCount('throttle:alice', 60_000), 1);
    assert.equal(await second.addCount('throttle:alice', 60_000), 2);
    assert.equal(await first.readCount('throttle:alice'), 2);
    await second.clear('throttle:alice');
    assert.equal(await first.readCount('throttle:alice'), 0);
    assert.equal(await first.takeTurn('throttle:alice', 5_000), 0);
    assert.ok((await second.takeTurn('throttle:alice', 5_000)) > 0, 'the turn one took is taken for the other');
    await first.holdTurn('throttle:alice', 0);
    assert.equal(await second.takeTurn('throttle:alice', 5_000), 0);
  });

  it('keeps values, and removes one set to undefined', async () => {
    const { workers } = cluster(2);
    const [first, second] = workers as [IpcSharedState, IpcSharedState];
    await first.set('maintenance', '{"on":true}');
    assert.equal(await second.get('maintenance'), '{"on":true}');
    await second.set('maintenance', undefined);
    assert.equal(await first.get('maintenance'), undefined);
  });

  it('passes a notice from one worker to every worker, the sender included', async () => {
    const { workers } = cluster(3);
    const heard: string[] = [];
    workers.forEach((worker, index) => worker.subscribe('revocations', (message) => heard.push(`${index}:${message}`)));
    const stop = workers[1]!.subscribe('sessions', () => heard.push('wrong channel'));
    stop();
    await workers[2]!.publish('revocations', 'token-1');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(heard.sort(), ['0:token-1', '1:token-1', '2:token-1']);
  });

  it('rejects when the primary does not answer, or is gone, so callers go on alone', async () => {
    const silent = new IpcSharedState({ connected: true, send: () => undefined }, { timeoutMs: 20 });
    // The call's own timer does not keep a process alive: this one keeps the test's.
    const alive = setTimeout(() => undefined, 1000);
    await assert.rejects(silent.readCount('k'), /did not answer within 20 ms/);
    clearTimeout(alive);
    const gone = new IpcSharedState({ connected: false, send: () => assert.fail('nothing is sent') });
    await assert.rejects(gone.addCount('k', 1000), /primary is gone/);
    const cut = new IpcSharedState({ connected: true, send: () => undefined });
    const pending = cut.readCount('k');
    cut.disconnected();
    await assert.rejects(pending, /primary is gone/);
    await cut.close();
    await assert.rejects(cut.readCount('k'), /closed/);
  });

  it('an error in the primary\'s state reaches the caller as a rejection', async () => {
    const { hub, workers } = cluster(1);
    await hub.close();
    await assert.rejects(workers[0]!.readCount('k'), /closed/);
  });
});

describe('ACME across the cluster', () => {
  it('passes every challenge on, keeps the pending ones for workers that start later, and waits for the workers before validation', async () => {
    const sent: ChallengeChange[] = [];
    let synced = 0;
    const challenges = new ClusterChallenges({ broadcast: (change) => sent.push(change), sync: async () => void synced++ });
    challenges.addHttp('token-1', 'answer-1');
    challenges.addHttp('token-2', 'answer-2');
    challenges.removeHttp('token-1');
    assert.equal(challenges.httpAnswer('token-2'), 'answer-2', 'the primary answers too (its plain-HTTP listener)');
    assert.deepEqual(sent.map((change) => change.op), ['add-http', 'add-http', 'remove-http']);
    assert.deepEqual(challenges.current(), [{ op: 'add-http', token: 'token-2', answer: 'answer-2' }]);
    await challenges.published();
    assert.equal(synced, 1);
  });

  it('a worker installs the certificate it was given and every one sent later, and answers the challenges it was told of', () => {
    const worker = new AcmeFromPrimary({ type: 'gateway:setup', certificate: { cert: 'CERT-1', key: 'KEY-1' }, challenges: [{ op: 'add-http', token: 't', answer: 'a' }] });
    assert.equal(worker.receive({ type: 'gateway:challenge', change: { op: 'add-http', token: 'u', answer: 'b' } }), true, 'before the gateway runs: kept');
    const installed: string[] = [];
    const local = new AcmeChallenges();
    const keeper = worker.keeper({ logger: undefined as never, challenges: local, install: (cert) => installed.push(cert) }, ['registry.example.com']);
    assert.equal(local.httpAnswer('t'), 'a');
    assert.equal(local.httpAnswer('u'), 'b');
    assert.deepEqual(keeper.status(), { state: 'waiting', domains: ['registry.example.com'] });
    return keeper.loadFromDisk().then((loaded) => {
      assert.equal(loaded, true);
      worker.receive({ type: 'gateway:certificate', cert: 'CERT-2', key: 'KEY-2' });
      worker.receive({ type: 'gateway:acme-status', status: { state: 'valid', domains: ['registry.example.com'], notAfter: '2030-01-01T00:00:00.000Z' } });
      worker.receive({ type: 'gateway:challenge', change: { op: 'remove-http', token: 't' } });
      assert.deepEqual(installed, ['CERT-1', 'CERT-2']);
      assert.equal(keeper.status().state, 'valid');
      assert.equal(local.httpAnswer('t'), undefined);
      assert.equal(worker.receive({ type: 'gateway:stop' }), false, 'not an ACME message');
    });
  });
});

describe('locks across workers', () => {
  /** Workers whose locks the one hub holds, over a JSON channel. */
  function workersWithLocks(count: number) {
    const hub = new LockHub();
    const workers = Array.from({ length: count }, (_, index) => {
      let locks: ClusterLocks;
      const channel: PrimaryChannel = {
        connected: true,
        send: (sent) => {
          const message = parseWorkerMessage(overIpc(sent))!;
          assert.ok(hub.receive(index, message, (reply) => setImmediate(() => locks.receive(parsePrimaryMessage(overIpc(reply))!))));
        },
      };
      locks = new ClusterLocks(channel);
      return locks;
    });
    return { hub, workers };
  }

  it('one worker waits for a key another holds, and gets it when that one lets go', async () => {
    const { hub, workers } = workersWithLocks(2);
    const [first, second] = workers.map((worker) => worker.lock('immutable-tags')) as [ReturnType<ClusterLocks['lock']>, ReturnType<ClusterLocks['lock']>];
    const release = await first.acquire('team/app', 1000);
    let granted = false;
    const waiting = second.acquire('team/app', 5000).then((next) => {
      granted = true;
      return next;
    });
    const other = await workers[1]!.lock('tag-delete').acquire('team/app', 1000);
    other();
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(granted, false, 'the same name and key waits; another name does not');
    release();
    release();
    (await waiting)();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(hub.size, 0, 'nothing left held');
  });

  it('a wait that lasts too long is refused as one process refuses it', async () => {
    const { workers } = workersWithLocks(2);
    const release = await workers[0]!.lock('immutable-tags').acquire('team/app', 1000);
    await assert.rejects(workers[1]!.lock('immutable-tags').acquire('team/app', 20), (error: unknown) => {
      assert.ok(error instanceof RegistryError);
      assert.equal(error.status, 503);
      assert.match(error.message, /still in progress/);
      assert.equal(error.headers['Retry-After'], '5');
      return true;
    });
    release();
  });

  it('what a worker held is free once it is gone', async () => {
    const { hub, workers } = workersWithLocks(2);
    await workers[0]!.lock('referrers').acquire('team/app:sha256-x', 1000);
    const waiting = workers[1]!.lock('referrers').acquire('team/app:sha256-x', 5000);
    hub.workerGone(0);
    (await waiting)();
  });
});
