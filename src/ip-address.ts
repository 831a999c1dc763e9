// IPv6 addresses as numbers (the one parser behind certificate SANs), and the address group one client controls (login throttling, client shares).

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

/**
 * The group of addresses one client is assumed to control: the IPv4 address itself (also when
 * written IPv4-mapped, ::ffff:1.2.3.4), or the /64 of an IPv6 address, since a single host is
 * commonly given a whole /64. Anything else (a Unix socket, no address) is its own group.
 */
export function addressGroup(address: string): string {
  const bare = address.trim().replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
  if (net.isIPv4(bare)) return bare;
  const groups = ipv6Groups(bare);
  if (groups === undefined) return bare.toLowerCase();
  if (groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff) {
    return [groups[6]! >> 8, groups[6]! & 0xff, groups[7]! >> 8, groups[7]! & 0xff].join('.');
  }
  return `${groups
    .slice(0, 4)
    .map((group) => group.toString(16))
    .join(':')}::/64`;
}

