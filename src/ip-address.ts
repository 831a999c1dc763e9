// IPv6 addresses as numbers: the one parser behind certificate SANs and login throttling groups.

import net from 'node:net';

/** The eight 16-bit groups of an IPv6 address, or undefined when it is not one. */
export function ipv6Groups(address: string): number[] | undefined {
  if (!net.isIPv6(address)) return undefined;
  let text = address.toLowerCase();
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  const parts = (half: string | undefined) => (half === undefined || half === '' ? [] : half.split(':'));
  const head = parts(halves[0]);
  const rest = parts(halves[1]);
  const zeros = halves.length === 2 ? Array<string>(8 - head.length - rest.length).fill('0') : [];
  return [...head, ...zeros, ...rest].map((group) => Number.parseInt(group, 16));
}
