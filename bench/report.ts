// Turns the measurements into tables of ratios to the registry alone, verdicts against the targets, and one JSON line.

import type { ConcurrentResult } from './concurrent.js';
import type { RateResult } from './rates.js';
import { gib, median, round } from './support.js';
import type { Transfer, TransferResult } from './transfers.js';

/** Targets for the gateway (token mode), as ratios of its time to the registry alone over plain HTTP. */
export const targets = { pull: 1.1, push: 1.05 };

export interface FrontTransfers {
  front: string;
  push: TransferSummary;
  pull: TransferSummary;
}

interface TransferSummary {
  seconds: number;
  rounds: number[];
  /** Median time over the median direct time. */
  ratio: number;
  frontCpuPerGib: number;
  registryCpuPerGib: number;
  clientCpuPerGib: number | undefined;
  /** Highest peak RSS of any of the front's processes over the rounds, MiB. */
  peakRss: number;
}

function summarizeOne(mine: Transfer[], directSeconds: number, layerBytes: number): TransferSummary {
  const layerGib = layerBytes / gib;
  const seconds = median(mine.map((transfer) => transfer.seconds));
  return {
    seconds: round(seconds, 3),
    rounds: mine.map((transfer) => round(transfer.seconds, 3)),
    ratio: round(seconds / directSeconds, 3),
    frontCpuPerGib: round(median(mine.map((transfer) => transfer.frontCpu)) / layerGib, 2),
    registryCpuPerGib: round(median(mine.map((transfer) => transfer.registryCpu)) / layerGib, 2),
    clientCpuPerGib: mine.every((transfer) => transfer.clientCpu !== undefined) ? round(median(mine.map((transfer) => transfer.clientCpu!)) / layerGib, 2) : undefined,
    peakRss: Math.max(0, ...mine.flatMap((transfer) => transfer.peakRss)),
  };
}

export function summarizeTransfers(results: TransferResult[], layerBytes: number): FrontTransfers[] {
  const fronts = [...new Set(results.map((result) => result.front))];
  const of = (front: string) => results.filter((result) => result.front === front);
  const direct = of('direct');
  const directPush = median(direct.map((result) => result.push.seconds));
  const directPull = median(direct.map((result) => result.pull.seconds));
  return fronts.map((front) => ({
    front,
    push: summarizeOne(of(front).map((result) => result.push), directPush, layerBytes),
    pull: summarizeOne(of(front).map((result) => result.pull), directPull, layerBytes),
  }));
}

function cell(value: number | undefined, digits = 2): string {
  return value === undefined || !Number.isFinite(value) ? '-' : value.toFixed(digits);
}

function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length)));
  for (const row of rows) console.log(`  ${row.map((text, column) => (column === 0 ? text.padEnd(widths[column]!) : text.padStart(widths[column]!))).join('  ')}`);
}

function verdict(ratio: number, target: number): string {
  return ratio <= target ? `within ${target.toFixed(2)}` : `ABOVE the ${target.toFixed(2)} target`;
}

export function printTransfers(summaries: FrontTransfers[]): void {
  console.log('One client (skopeo copy), push then pull; ratio = median time / median direct time; CPU = seconds per GiB of layer');
  printTable([
    ['front', 'push s', 'ratio', 'pull s', 'ratio', 'push CPU/GiB front/reg/skopeo', 'pull CPU/GiB front/reg/skopeo', 'peak RSS push/pull MiB'],
    ...summaries.map((s) => [
      s.front,
      cell(s.push.seconds),
      cell(s.push.ratio, 3),
      cell(s.pull.seconds),
      cell(s.pull.ratio, 3),
      `${cell(s.push.frontCpuPerGib)} / ${cell(s.push.registryCpuPerGib)} / ${cell(s.push.clientCpuPerGib)}`,
      `${cell(s.pull.frontCpuPerGib)} / ${cell(s.pull.registryCpuPerGib)} / ${cell(s.pull.clientCpuPerGib)}`,
      `${s.push.peakRss} / ${s.pull.peakRss}`,
    ]),
  ]);
  const gateway = summaries.find((s) => s.front.startsWith('gateway'));
  const registryTls = summaries.find((s) => s.front === 'registry TLS');
  if (gateway) {
    console.log(`  gateway/direct: push ${gateway.push.ratio.toFixed(3)} (${verdict(gateway.push.ratio, targets.push)}), pull ${gateway.pull.ratio.toFixed(3)} (${verdict(gateway.pull.ratio, targets.pull)})`);
    if (registryTls) {
      const behind = (mine: number, theirs: number) => (mine <= theirs ? 'not behind' : 'BEHIND');
      console.log(`  gateway vs the registry's own TLS: push ${behind(gateway.push.seconds, registryTls.push.seconds)}, pull ${behind(gateway.pull.seconds, registryTls.pull.seconds)}`);
    }
  }
  console.log('  every round, seconds (push; pull):');
  for (const s of summaries) console.log(`    ${s.front.padEnd(14)} ${s.push.rounds.join(', ')}; ${s.pull.rounds.join(', ')}`);
}

export function printConcurrent(results: ConcurrentResult[]): void {
  console.log('\nConcurrent pulls of the layer (curl to /dev/null); ratio = time / direct time at the same client count; vs nginx = nginx time / this time, as many workers');
  const counts = [...new Set(results.map((result) => result.clients))];
  const rows = [['clients', 'front', 'seconds', 'ratio', 'vs nginx', 'MiB/s', 'front CPU/GiB', 'curl CPU/GiB', 'peak RSS MiB per process']];
  for (const clients of counts) {
    const mine = results.filter((result) => result.clients === clients);
    const direct = mine.find((result) => result.kind === 'direct');
    for (const result of mine) {
      const nginx = result.kind === 'gateway' ? mine.find((other) => other.kind === 'nginx' && other.workers === result.workers) : undefined;
      rows.push([
        String(clients),
        result.front,
        cell(result.seconds),
        cell(direct ? result.seconds / direct.seconds : undefined, 3),
        cell(nginx ? nginx.seconds / result.seconds : undefined),
        cell(result.mibPerSecond, 0),
        cell(result.frontCpuPerGib),
        cell(result.clientCpuPerGib),
        result.peakRss.join(' '),
      ]);
    }
  }
  printTable(rows);
  const most = Math.max(...counts);
  const at = (front: string) => results.find((result) => result.clients === most && result.front === front);
  for (const kind of ['gateway', 'nginx']) {
    const one = at(`${kind} 1w`);
    const two = at(`${kind} 2w`);
    if (one && two) console.log(`  ${most} clients, ${kind} 2 workers vs 1: ${(one.seconds / two.seconds).toFixed(2)}x as fast (${two.seconds < one.seconds ? 'faster' : 'NOT faster'})`);
  }
}

export function printRates(results: RateResult[] | null, skipped: string | null, seconds: number, connections: number): void {
  console.log(`\nSmall requests with ab -k -c${connections} -t${seconds}; ratio = rate / the rate of nginx with as many workers`);
  if (!results) {
    console.log(`  skipped: ${skipped}`);
    return;
  }
  const nginxRate = (workers: number) => results.find((result) => result.request === 'head-manifest' && result.kind === 'nginx' && result.workers === workers)?.requestsPerSecond;
  const direct = results.find((result) => result.request === 'head-manifest' && result.kind === 'direct')?.requestsPerSecond;
  const rows = [['request', 'front', 'auth', 'req/s', '% of direct', 'vs nginx', 'CPU s/10k req', 'peak RSS MiB per process', '']];
  for (const result of results) {
    const nginx = result.request === 'head-manifest' && result.kind === 'gateway' ? nginxRate(result.workers) : undefined;
    const warnings = [result.badResponses > 0 ? `${result.badResponses} non-2xx: NOT VALID` : '', result.failed > 0 ? `${result.failed} failed` : ''].filter(Boolean).join('; ');
    rows.push([
      result.request === 'token' ? 'GET /token' : 'HEAD manifest',
      result.front,
      result.auth,
      cell(result.requestsPerSecond, 0),
      result.request === 'head-manifest' && direct ? `${((result.requestsPerSecond / direct) * 100).toFixed(0)}%` : '-',
      cell(nginx ? result.requestsPerSecond / nginx : undefined, 2),
      cell(result.cpuPer10k),
      result.peakRss.join(' '),
      warnings,
    ]);
  }
  printTable(rows);
}
