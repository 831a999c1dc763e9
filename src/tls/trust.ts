// How each kind of client is told to trust the local CA for HOST:PORT: the text `gateway certs` and `gateway certs show` print.
import net from 'node:net';
import path from 'node:path';

export interface TrustTarget {
  /** HOST:PORT as clients name the registry (HOST alone for port 443). */
  hostPort: string;
  /** ca.crt as the user should type it (relative to the current folder when inside it). */
  caCert: string;
  /** token.crt as the user should type it, for registries that verify tokens themselves. */
  tokenCert?: string;
}

/** Where containerd (ctr --hosts-dir, nerdctl, the CRI plugin's config_path) looks for per-registry settings. */
export const CONTAINERD_HOSTS_DIR = '/etc/containerd/certs.d';

/**
 * The address clients use: the configured public host, else the certificate's first DNS name that is
 * not a wildcard, else its first IP address. Port 443 is left out, as clients leave it out.
 */
export function clientAddress(options: { names: string[]; port: number; publicHost?: string }): string {
  const name =
    options.publicHost ??
    options.names.find((entry) => !net.isIP(entry) && !entry.startsWith('*.')) ??
    options.names.find((entry) => net.isIP(entry)) ??
    'HOST';
  const host = net.isIPv6(name) ? `[${name}]` : name;
  return options.port === 443 ? host : `${host}:${options.port}`;
}

/** A path as typed from the current folder: relative inside it (also right under compose), absolute outside. */
export function displayPath(file: string, cwd = process.cwd()): string {
  const relative = path.relative(cwd, file);
  return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : file;
}

/**
 * containerd's hosts.toml for https://HOST:PORT trusting `caFile`. containerd 1.6 ignores a file
 * without a [host] table (and then falls back to plain http). The top-level `server` and `ca` make its
 * fallback origin the same one with the same CA: without them it falls back to a default server,
 * which for localhost skips certificate verification altogether.
 */
export function containerdHostsToml(hostPort: string, caFile: string): string {
  const quote = (value: string) => JSON.stringify(value);
  const server = `https://${hostPort}`;
  return [
    `server = ${quote(server)}`,
    `ca = ${quote(caFile)}`,
    '',
    `[host.${quote(server)}]`,
    '  capabilities = ["pull", "resolve", "push"]',
    `  ca = ${quote(caFile)}`,
    '',
  ].join('\n');
}

/** The arguments of the `ctr` pull that reads that hosts.toml (ctr reads none unless told where). */
export function ctrPullArguments(hostsDir: string, reference: string, user: string): string[] {
  return ['images', 'pull', '--hosts-dir', hostsDir, '--user', user, reference];
}

/** Tells a user how to make docker, podman/skopeo/buildah, containerd and the system trust the CA. */
export function trustInstructions(target: TrustTarget): string {
  const { hostPort } = target;
  const ca = shellQuote(target.caCert);
  const dockerDir = shellQuote(`/etc/docker/certs.d/${hostPort}`);
  const containersDir = shellQuote(`/etc/containers/certs.d/${hostPort}`);
  const containerdDir = `${CONTAINERD_HOSTS_DIR}/${hostPort}`;
  const ctrPull = ctrPullArguments(CONTAINERD_HOSTS_DIR, `${hostPort}/REPOSITORY:TAG`, 'NAME').map(shellQuote).join(' ');
  const lines = [
    `Trust the local CA ${ca} on every client of ${hostPort}:`,
    '',
    '  Docker (read at each pull, no restart):',
    `    sudo mkdir -p ${dockerDir} && sudo cp ${ca} ${dockerDir}/ca.crt`,
    `    docker login ${hostPort}`,
    '  Podman, Skopeo, Buildah:',
    `    sudo mkdir -p ${containersDir} && sudo cp ${ca} ${containersDir}/ca.crt`,
    `    podman login ${hostPort}`,
    '    or copy ca.crt alone into a folder and pass that folder with --cert-dir',
    '    (not the certificate folder itself: its .key files would be read as client certificates)',
    `  containerd (ctr, nerdctl; the CRI plugin of Kubernetes nodes once its config_path is ${CONTAINERD_HOSTS_DIR}):`,
    `    sudo mkdir -p ${shellQuote(containerdDir)} && sudo cp ${ca} ${shellQuote(`${containerdDir}/ca.crt`)}`,
    `    sudo tee ${shellQuote(`${containerdDir}/hosts.toml`)} >/dev/null <<'EOF'`,
    ...containerdHostsToml(hostPort, `${containerdDir}/ca.crt`).trimEnd().split('\n'),
    'EOF',
    `    sudo ctr ${ctrPull}`,
    '  The whole system (curl, git, ...):',
    `    Debian/Ubuntu: sudo cp ${ca} /usr/local/share/ca-certificates/registry-gateway-ca.crt && sudo update-ca-certificates`,
    `    Fedora/RHEL:   sudo cp ${ca} /etc/pki/ca-trust/source/anchors/registry-gateway-ca.crt && sudo update-ca-trust`,
  ];
  if (target.tokenCert !== undefined) {
    lines.push('', `If the registry should verify tokens itself, set its auth.token.rootcertbundle to ${shellQuote(target.tokenCert)}.`);
  }
  return lines.join('\n');
}

export function shellQuote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}
