// Runs real podman and a private containerd (driven by ctr) in temp folders, so client tests touch no system state.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdir, open, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * Fails with the Debian package to install when a client is missing: a test that silently skips
 * would claim a client works when it was never tried.
 */
export async function requireCommand(command: string, debianPackage: string): Promise<void> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    try {
      await access(path.join(dir, command), constants.X_OK);
      return;
    } catch {
      // not in this folder; try the next
    }
  }
  throw new Error(`${command} is not installed: install the Debian package ${debianPackage} (apt-get install -y ${debianPackage}, or npm test, which runs scripts/setup.sh --test)`);
}

export interface CommandResult {
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to completion; a non-zero exit rejects with `label` (never the arguments, which
 * may hold a password) and the command's own stderr.
 */
export function runCommand(command: string, args: string[], options: { label: string; env?: NodeJS.ProcessEnv; stdin?: string; cwd?: string }): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(command, args, { env: options.env ?? process.env, cwd: options.cwd, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) {
        const status = error.code ?? error.signal ?? 'unknown status';
        reject(new Error(`${options.label} failed (${status}): ${stderr.trim() || stdout.trim() || 'no output'}`));
        return;
      }
      resolve({ stdout, stderr });
    });
    // A command that exits before reading its input must not take the test process down with EPIPE.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(options.stdin ?? '');
  });
}

/** The fields of `podman image inspect` the tests compare. */
export interface PodmanImage {
  Id: string;
  Digest: string;
  RootFS: { Type: string; Layers: string[] };
}

/**
 * One podman with its own image storage, registries.conf and auth file, as root, without
 * overlay mounts (vfs), systemd or a shared events journal. It never runs a container.
 */
export class Podman {
  readonly authFile: string;
  private readonly dir: string;
  private readonly env: NodeJS.ProcessEnv;

  private constructor(dir: string) {
    this.dir = dir;
    this.authFile = path.join(dir, 'auth.json');
    this.env = {
      ...process.env,
      CONTAINERS_REGISTRIES_CONF: path.join(dir, 'registries.conf'),
      CONTAINERS_CONF: path.join(dir, 'containers.conf'),
      REGISTRY_AUTH_FILE: this.authFile,
      // Image copies stage big files here instead of /var/tmp.
      TMPDIR: path.join(dir, 'tmp'),
    };
  }

  /** `dir` must be an empty folder the caller removes afterwards. */
  static async create(dir: string): Promise<Podman> {
    await mkdir(path.join(dir, 'tmp'), { recursive: true });
    // No search registries: every image name in the tests is fully qualified.
    await writeFile(path.join(dir, 'registries.conf'), 'unqualified-search-registries = []\n');
    // The system containers.conf is kept out; the global flags below carry what matters.
    await writeFile(path.join(dir, 'containers.conf'), '');
    // An empty auth file, so an anonymous podman reads no credentials from anywhere else.
    await writeFile(path.join(dir, 'auth.json'), '{"auths":{}}\n');
    return new Podman(dir);
  }

  run(args: string[], options: { stdin?: string; cwd?: string } = {}): Promise<CommandResult> {
    const global = [
      '--root', path.join(this.dir, 'root'),
      '--runroot', path.join(this.dir, 'run'),
      '--tmpdir', path.join(this.dir, 'tmp'),
      '--network-config-dir', path.join(this.dir, 'networks'),
      '--storage-driver', 'vfs',
      '--events-backend', 'file',
      '--cgroup-manager', 'cgroupfs',
    ];
    return runCommand('podman', [...global, ...args], { label: `podman ${args[0]}`, env: this.env, ...options });
  }

  async login(o: { host: string; user: string; password: string; certDir: string }): Promise<void> {
    await this.run(['login', '--cert-dir', o.certDir, '--username', o.user, '--password-stdin', o.host], { stdin: o.password });
  }

  /** Pulls `reference` (a registry name, or a transport such as oci:DIR:TAG) and returns the image ID. */
  async pull(reference: string, o: { certDir?: string } = {}): Promise<string> {
    const certArgs = o.certDir === undefined ? [] : ['--cert-dir', o.certDir];
    const { stdout } = await this.run(['pull', '--quiet', ...certArgs, reference]);
    return stdout.trim();
  }

  /**
   * Copies the image tagged `tag` in an OCI layout folder into this storage and returns its ID.
   * podman names such an image after the layout's path, which must be lowercase, so the path is
   * given relative to the layout's parent (a temp folder's random name has capitals).
   */
  async loadOciLayout(layoutDir: string, tag: string): Promise<string> {
    const name = path.basename(layoutDir);
    if (name !== name.toLowerCase()) throw new Error(`podman needs a lowercase OCI layout folder name, not ${name}`);
    const { stdout } = await this.run(['pull', '--quiet', `oci:${name}:${tag}`], { cwd: path.dirname(layoutDir) });
    return stdout.trim();
  }

  /** Pushes a local image to `destination` (transport:reference) and returns the manifest digest written. */
  async push(image: string, destination: string, o: { certDir: string }): Promise<string> {
    const digestFile = path.join(this.dir, 'pushed-digest');
    await this.run(['push', '--quiet', '--cert-dir', o.certDir, '--digestfile', digestFile, image, destination]);
    return (await readFile(digestFile, 'utf8')).trim();
  }

  async inspect(image: string): Promise<PodmanImage> {
    const { stdout } = await this.run(['image', 'inspect', image]);
    const [first] = JSON.parse(stdout) as PodmanImage[];
    if (first === undefined) throw new Error(`podman image inspect ${image} returned nothing`);
    return first;
  }
}

/** One row of `ctr images ls`. */
export interface CtrImage {
  ref: string;
  mediaType: string;
  digest: string;
}

const startTimeoutMs = 15_000;
const stopTimeoutMs = 5_000;

/**
 * A containerd of our own: root, state, sockets and plugin folder in `dir`, the CRI plugin and every
 * snapshotter but native disabled (no kernel overlay or block devices needed), driven with ctr.
 */
export class Containerd {
  readonly socket: string;
  /** The folder `ctr --hosts-dir` reads: one HOST:PORT/hosts.toml per registry. */
  readonly hostsDir: string;
  private readonly dir: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;

  private constructor(dir: string) {
    this.dir = dir;
    this.socket = path.join(dir, 'containerd.sock');
    this.hostsDir = path.join(dir, 'hosts');
  }

  /** `dir` must be an empty folder the caller removes after stop(). */
  static async start(dir: string): Promise<Containerd> {
    const containerd = new Containerd(dir);
    try {
      await containerd.launch();
    } catch (error) {
      // The caller never gets an instance to stop, so nothing may be left running.
      await containerd.stop();
      throw error;
    }
    return containerd;
  }

  private configToml(): string {
    const quote = (value: string) => JSON.stringify(value);
    return [
      'version = 2',
      `root = ${quote(path.join(this.dir, 'root'))}`,
      `state = ${quote(path.join(this.dir, 'state'))}`,
      'disabled_plugins = [',
      '  "io.containerd.grpc.v1.cri",',
      '  "io.containerd.snapshotter.v1.aufs",',
      '  "io.containerd.snapshotter.v1.btrfs",',
      '  "io.containerd.snapshotter.v1.devmapper",',
      '  "io.containerd.snapshotter.v1.overlayfs",',
      '  "io.containerd.snapshotter.v1.zfs",',
      ']',
      '[grpc]',
      `  address = ${quote(this.socket)}`,
      '[ttrpc]',
      `  address = ${quote(`${this.socket}.ttrpc`)}`,
      // Its default is /opt/containerd.
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${quote(path.join(this.dir, 'opt'))}`,
      '',
    ].join('\n');
  }

  private async launch(): Promise<void> {
    await mkdir(this.hostsDir, { recursive: true });
    const configPath = path.join(this.dir, 'config.toml');
    await writeFile(configPath, this.configToml());
    const log = await open(path.join(this.dir, 'containerd.log'), 'a');
    // Its own process group, so stop() reaches anything it started as well.
    const child = spawn('containerd', ['--config', configPath], { detached: true, stdio: ['ignore', log.fd, log.fd] });
    await log.close();
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const spawnError = new Promise<never>((_, reject) => child.once('error', reject));
    // Once serving, a late spawn error has nobody to report to.
    spawnError.catch(() => {});
    await Promise.race([this.waitUntilServing(), spawnError]);
  }

  private async waitUntilServing(): Promise<void> {
    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      if (this.child?.exitCode !== null) throw new Error(`containerd exited at start: ${await this.logTail()}`);
      try {
        await this.ctr(['version']);
        return;
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`containerd did not answer on ${this.socket} within ${startTimeoutMs} ms: ${(error as Error).message}\n${await this.logTail()}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  async logTail(): Promise<string> {
    const text = await readFile(path.join(this.dir, 'containerd.log'), 'utf8').catch(() => '');
    return text.split('\n').slice(-20).join('\n');
  }

  ctr(args: string[]): Promise<CommandResult> {
    return runCommand('ctr', ['--address', this.socket, ...args], { label: `ctr ${args.slice(0, 2).join(' ')}` });
  }

  /**
   * Points ctr at https://HOST:PORT trusting only `caFile`. containerd 1.6 refuses a hosts.toml
   * without a [host] table, and its `server` fallback needs the CA too.
   */
  async trustRegistry(host: string, caFile: string): Promise<void> {
    const quote = (value: string) => JSON.stringify(value);
    const server = `https://${host}`;
    const toml = [
      `server = ${quote(server)}`,
      `ca = ${quote(caFile)}`,
      '',
      `[host.${quote(server)}]`,
      '  capabilities = ["pull", "resolve", "push"]',
      `  ca = ${quote(caFile)}`,
      '',
    ].join('\n');
    await mkdir(path.join(this.hostsDir, host), { recursive: true });
    await writeFile(path.join(this.hostsDir, host, 'hosts.toml'), toml);
  }

  async pull(reference: string, o: { user: string; password: string }): Promise<void> {
    await this.ctr(['images', 'pull', '--hosts-dir', this.hostsDir, '--user', `${o.user}:${o.password}`, '--snapshotter', 'native', reference]);
  }

  async push(reference: string, o: { user: string; password: string }): Promise<void> {
    await this.ctr(['images', 'push', '--hosts-dir', this.hostsDir, '--user', `${o.user}:${o.password}`, reference]);
  }

  async tag(source: string, target: string): Promise<void> {
    await this.ctr(['images', 'tag', source, target]);
  }

  async images(): Promise<CtrImage[]> {
    const { stdout } = await this.ctr(['images', 'ls']);
    return stdout
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/))
      .filter((columns) => columns.length >= 3)
      .map(([ref, mediaType, digest]) => ({ ref: ref!, mediaType: mediaType!, digest: digest! }));
  }

  /** SIGTERM to the whole process group, SIGKILL if it is still there after a few seconds. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child?.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const signalGroup = (signal: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, signal);
      } catch {
        // the group is already gone
      }
    };
    signalGroup('SIGTERM');
    const timedOut = await Promise.race([
      this.exited!.then(() => false),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(true), stopTimeoutMs).unref()),
    ]);
    if (timedOut) {
      signalGroup('SIGKILL');
      await this.exited;
    }
  }
}
