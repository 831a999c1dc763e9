// Runs the registry's own `garbage-collect`, reads what it says it removed, and measures the filesystem driver's blobs before and after.

import { spawn } from 'node:child_process';
import { opendir, stat } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { childEnvironment } from '../registry/registry-setup.js';
import { GcError, type GcTarget } from './gc-target.js';

export interface BlobCount {
  blobs: number;
  bytes: number;
}

export interface CollectorResult {
  /** Blobs some manifest still references ("N blobs marked"). */
  marked: number | undefined;
  /** Digests of blobs no manifest references (deleted, or with --dry-run would be). */
  eligible: string[];
  /** Untagged manifests deleted (--delete-untagged). */
  manifests: number;
  /** "Deleting blob" lines: blobs the collector did delete. */
  deleted: number;
  /** Filesystem driver: every blob stored, before and after (after: undefined for a dry run). */
  before: BlobCount | undefined;
  after: BlobCount | undefined;
  /** Filesystem driver: the bytes of the eligible blobs, read before anything was deleted. */
  eligibleBytes: number | undefined;
}

const summaryLine = /^(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion/;
const eligibleLine = /^blob eligible for deletion: (sha256:[a-f0-9]{64})$/;
const deletingLine = /Deleting blob: /;
const emptyStorageLine = /failed to mark: .*Path not found: \/docker\/registry\/v2\/repositories$/;
const outputKept = 20;

function blobsFolder(root: string): string {
  return path.join(root, 'docker', 'registry', 'v2', 'blobs');
}

function dataFileOf(root: string, digest: string): string {
  const [algorithm = 'sha256', hex = ''] = digest.split(':');
  return path.join(blobsFolder(root), algorithm, hex.slice(0, 2), hex, 'data');
}

/** Every blob's data file under a filesystem driver's root: blobs/ALGORITHM/XX/HEX/data. */
export async function countBlobs(root: string): Promise<BlobCount> {
  const count: BlobCount = { blobs: 0, bytes: 0 };
  const walk = async (folder: string, depth: number): Promise<void> => {
    let entries;
    try {
      entries = await opendir(folder);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    for await (const entry of entries) {
      const full = path.join(folder, entry.name);
      if (depth < 3 && entry.isDirectory()) await walk(full, depth + 1);
      else if (depth === 3 && entry.name === 'data' && entry.isFile()) {
        count.blobs += 1;
        count.bytes += (await stat(full)).size;
      }
    }
  };
  await walk(blobsFolder(root), 0);
  return count;
}

async function bytesOf(root: string, digests: readonly string[]): Promise<number> {
  let total = 0;
  for (const digest of digests) total += await stat(dataFileOf(root, digest)).then((info) => info.size, () => 0);
  return total;
}

export interface CollectorOptions {
  dryRun: boolean;
  deleteUntagged: boolean;
  env: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  /** Every line the collector prints, for the operator (verbose) or the log. */
  onLine?(line: string): void;
}

/** Runs `BINARY garbage-collect [--dry-run] [--delete-untagged] CONFIG`; rejects with GcError naming its last output when it fails. */
export async function runCollector(target: GcTarget, options: CollectorOptions): Promise<CollectorResult> {
  const root = target.filesystemRoot;
  const before = root === undefined ? undefined : await countBlobs(root);
  const args = ['garbage-collect', ...(options.dryRun ? ['--dry-run'] : []), ...(options.deleteUntagged ? ['--delete-untagged'] : []), target.configFile];
  const child = spawn(target.binary, args, { stdio: ['ignore', 'pipe', 'pipe'], env: childEnvironment(options.env) });
  const result: CollectorResult = { marked: undefined, eligible: [], manifests: 0, deleted: 0, before, after: undefined, eligibleBytes: undefined };
  const recent: string[] = [];
  const read = (stream: NodeJS.ReadableStream) =>
    createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
      if (line.trim() === '') return;
      options.onLine?.(line);
      recent.push(line);
      if (recent.length > outputKept) recent.shift();
      const summary = summaryLine.exec(line);
      if (summary) {
        result.marked = Number(summary[1]);
        result.manifests = Number(summary[3]);
      }
      const eligible = eligibleLine.exec(line.trim());
      if (eligible) result.eligible.push(eligible[1]!);
      if (deletingLine.test(line)) result.deleted += 1;
    });
  read(child.stdout!);
  read(child.stderr!);
  const abort = () => child.kill('SIGTERM');
  options.signal?.addEventListener('abort', abort, { once: true });
  const ended = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  options.signal?.removeEventListener('abort', abort);
  const command = `${target.binary} ${args.join(' ')}`;
  if (ended.error) throw new GcError(`cannot run ${command} (${ended.error.message})`);
  // Registry 2.x fails on a storage nothing was ever pushed to: there is nothing to collect.
  const empty = ended.code === 1 && recent.some((line) => emptyStorageLine.test(line));
  if (ended.code !== 0 && !empty) {
    const how = ended.signal ? `was stopped by ${ended.signal}` : `failed with exit code ${ended.code}`;
    throw new GcError(`${command} ${how}${recent.length > 0 ? `; its last output:\n  ${recent.slice(-8).join('\n  ')}` : ''}`);
  }
  if (root !== undefined) {
    if (options.dryRun) result.eligibleBytes = await bytesOf(root, result.eligible);
    else result.after = await countBlobs(root);
  }
  return result;
}
