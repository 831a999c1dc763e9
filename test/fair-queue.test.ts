// Tests for the fair queue: sources take turns, each source's backlog is bounded, a full queue makes room for a new source.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FairQueue } from '../src/auth/fair-queue.js';

class Refused extends Error {}

/** Tasks the test finishes by hand, recording the order they started in. */
function harness(options: { concurrency: number; maxWaitingPerSource: number; maxWaiting: number }) {
  const queue = new FairQueue({ ...options, refusal: () => new Refused('no room') });
  const startedOrder: string[] = [];
  const finishers = new Map<string, () => void>();
  const outcomes = new Map<string, 'done' | 'refused'>();
  const submit = (source: string, name: string) =>
    queue
      .run(source, () => {
        startedOrder.push(name);
        return new Promise<void>((resolve) => finishers.set(name, resolve));
      })
      .then(
        () => void outcomes.set(name, 'done'),
        (error: unknown) => {
          assert.ok(error instanceof Refused);
          outcomes.set(name, 'refused');
        },
      );
  const finish = async (name: string) => {
    finishers.get(name)!();
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  };
  return { queue, startedOrder, outcomes, submit, finish };
}

const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
};

describe('FairQueue', () => {
  it('gives a second source the next free slot, however many tasks the first has waiting', async () => {
    const { startedOrder, submit, finish } = harness({ concurrency: 1, maxWaitingPerSource: 100, maxWaiting: 1000 });
    for (let i = 1; i <= 6; i++) void submit('flood', `flood-${i}`);
    void submit('alice', 'alice-1');
    void submit('bob', 'bob-1');
    await settle();
    assert.deepEqual(startedOrder, ['flood-1']);
    for (const name of ['flood-1', 'flood-2', 'alice-1', 'bob-1', 'flood-3']) await finish(name);
    assert.deepEqual(startedOrder, ['flood-1', 'flood-2', 'alice-1', 'bob-1', 'flood-3', 'flood-4']);
  });

  it('lets a source alone use every slot', async () => {
    const { startedOrder, submit } = harness({ concurrency: 3, maxWaitingPerSource: 100, maxWaiting: 1000 });
    for (let i = 1; i <= 5; i++) void submit('only', `only-${i}`);
    await settle();
    assert.deepEqual(startedOrder, ['only-1', 'only-2', 'only-3']);
  });

  it('refuses a source its tasks beyond its own bound, and only those', async () => {
    const { queue, outcomes, submit } = harness({ concurrency: 1, maxWaitingPerSource: 3, maxWaiting: 1000 });
    for (let i = 1; i <= 10; i++) void submit('flood', `flood-${i}`);
    void submit('alice', 'alice-1');
    await settle();
    assert.deepEqual(
      [...outcomes].filter(([, outcome]) => outcome === 'refused').map(([name]) => name),
      ['flood-5', 'flood-6', 'flood-7', 'flood-8', 'flood-9', 'flood-10'],
    );
    assert.equal(queue.waiting, 4, 'three of the flood and alice wait; one flood task runs');
  });

  it('when full, pushes out the newest task of the longest queue for a source with fewer waiting', async () => {
    const { startedOrder, outcomes, submit, finish } = harness({ concurrency: 1, maxWaitingPerSource: 10, maxWaiting: 4 });
    for (let i = 1; i <= 5; i++) void submit('flood', `flood-${i}`);
    await settle();
    void submit('alice', 'alice-1');
    await settle();
    assert.equal(outcomes.get('flood-5'), 'refused');
    assert.equal(outcomes.get('alice-1'), undefined, 'alice waits');
    await finish('flood-1');
    await finish('flood-2');
    assert.deepEqual(startedOrder, ['flood-1', 'flood-2', 'alice-1']);
  });

  it('refuses a newcomer when the full queue holds one task per source', async () => {
    const { outcomes, submit } = harness({ concurrency: 1, maxWaitingPerSource: 10, maxWaiting: 2 });
    void submit('a', 'a-1');
    void submit('b', 'b-1');
    void submit('c', 'c-1');
    void submit('d', 'd-1');
    await settle();
    assert.equal(outcomes.get('d-1'), 'refused');
    assert.equal(outcomes.get('b-1'), undefined);
    assert.equal(outcomes.get('c-1'), undefined);
  });

  it('passes on a task failure and keeps going', async () => {
    const queue = new FairQueue({ concurrency: 1, maxWaitingPerSource: 5, maxWaiting: 5, refusal: () => new Refused() });
    await assert.rejects(queue.run('a', () => Promise.reject(new Error('broken'))), /broken/);
    await assert.rejects(
      queue.run('a', () => {
        throw new Error('thrown');
      }),
      /thrown/,
    );
    assert.equal(await queue.run('a', async () => 42), 42);
    assert.equal(queue.running, 0);
  });
});
