// What a collection did, in one sentence for the operator and as fields for the log.

import type { GcReport } from './gc.js';

/** 1536 -> "1.5 KiB (1536 bytes)". */
export function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(1)} ${units[unit]} (${bytes} bytes)`;
}

export interface DescribedReport {
  summary: string;
  fields: Record<string, number | string | boolean>;
}

export function describeGcReport(report: GcReport): DescribedReport {
  const { result, target } = report;
  const plural = (count: number, word: string) => `${count} ${word}${count === 1 ? '' : 's'}`;
  const manifests = result.manifests > 0 ? ` and ${plural(result.manifests, 'untagged manifest')}` : '';
  const fields: DescribedReport['fields'] = { driver: target.driver, held: report.held, gateways: report.gateways, blobsEligible: result.eligible.length, manifests: result.manifests };
  if (result.marked !== undefined) fields.blobsInUse = result.marked;
  let summary: string;
  if (report.dryRun) {
    const bytes = result.eligibleBytes === undefined ? '' : ` (${formatBytes(result.eligibleBytes)})`;
    summary = `dry run: would remove ${plural(result.eligible.length, 'blob')}${bytes}${manifests}`;
    if (result.eligibleBytes !== undefined) fields.bytesEligible = result.eligibleBytes;
  } else if (result.before !== undefined && result.after !== undefined) {
    const blobs = result.before.blobs - result.after.blobs;
    const bytes = result.before.bytes - result.after.bytes;
    fields.blobsRemoved = blobs;
    fields.bytesRemoved = bytes;
    summary = `removed ${plural(blobs, 'blob')}, ${formatBytes(bytes)}${manifests}; ${plural(result.after.blobs, 'blob')} (${formatBytes(result.after.bytes)}) remain in ${target.filesystemRoot}`;
  } else {
    fields.blobsRemoved = result.deleted;
    summary = `removed ${plural(result.deleted, 'blob')}${manifests} (the ${target.driver} driver's sizes are not measured)`;
  }
  if (result.marked !== undefined) summary += `; ${plural(result.marked, 'blob')} still in use`;
  return { summary, fields };
}
