// Runs a real OpenLDAP slapd (Debian slapd, ldap-utils) in a temp folder on loopback: its own cn=config, CA, users and groups.
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { requireCommand } from './clients.js';
import { freePort } from './ports.js';
import {
  configLdif,
  groupDn,
  groupLdif,
  LDAP_SUFFIX,
  ldapToolEnv,
  ldifLine,
  ldifRecord,
  makeCertificates,
  run,
  sshaHash,
  userDn,
  userLdif,
  type LdapGroup,
  type LdapUser,
} from './slapd-files.js';

export { escapeDnValue, LDAP_GROUPS_DN, LDAP_PEOPLE_DN, LDAP_SUFFIX, sshaHash, type LdapGroup, type LdapUser } from './slapd-files.js';

export interface SlapdOptions {
  /** Added to the default users (alice, bob and the one with filter characters in its uid). */
  users?: LdapUser[];
  /** Added to the default groups (developers: alice; ops: bob). */
  groups?: LdapGroup[];
  /** slapd's -d level: '0' (quiet, the default) or e.g. 'stats' to log every operation to slapd.log. */
  debug?: string;
}

/** A uid holding every character an LDAP filter must escape (NUL aside, which the directory refuses). */
export const ODD_UID = 'st*r(x)\\y';

export const DEFAULT_USERS: readonly LdapUser[] = [
  { uid: 'alice', password: 'alice-password', cn: 'Alice Liddell', sn: 'Liddell', mail: 'alice@example.test' },
  { uid: 'bob', password: 'bob-password', cn: 'Bob Builder', sn: 'Builder', mail: 'bob@example.test' },
  { uid: ODD_UID, password: 'odd-password', cn: 'Odd Name', sn: 'Name', mail: 'odd@example.test' },
];

export const DEFAULT_GROUPS: readonly LdapGroup[] = [
  { cn: 'developers', members: ['alice'] },
  { cn: 'ops', members: ['bob'] },
];

export interface LdapAccount {
  dn: string;
  password: string;
}

export interface RunningSlapd {
  /** ldap://127.0.0.1:PORT (plain, StartTLS offered). */
  url: string;
  /** ldaps://127.0.0.1:PORT */
  ldapsUrl: string;
  port: number;
  ldapsPort: number;
  /** PEM of the CA that signed the server certificate (SAN IP:127.0.0.1, DNS:localhost). */
  caPem: string;
  /** The same CA as a file, for programs that take a path; gone after stop(). */
  caFile: string;
  suffix: string;
  /** The rootdn: bypasses every ACL. */
  admin: LdapAccount;
  /** Service account with read access to people and groups (no userPassword). */
  reader: LdapAccount;
  users: readonly LdapUser[];
  groups: readonly LdapGroup[];
  userDn(uid: string): string;
  groupDn(cn: string): string;
  addUser(user: LdapUser): Promise<void>;
  addGroup(group: LdapGroup): Promise<void>;
  addMember(groupCn: string, uid: string): Promise<void>;
  removeMember(groupCn: string, uid: string): Promise<void>;
  setPassword(uid: string, password: string): Promise<void>;
  /** Deletes the user; the memberof overlay also takes it out of its groups. */
  deleteUser(uid: string): Promise<void>;
  /** Runs ldapmodify -a as the rootdn: add records, or changetype records. */
  modify(ldif: string): Promise<void>;
  /** Stops slapd but keeps its data and ports: connections are refused until up(). */
  down(): Promise<void>;
  /** Starts slapd again after down(), on the same ports with the same data. */
  up(): Promise<void>;
  /** SIGSTOP: the ports still accept TCP connections but nothing answers (a hung directory). */
  freeze(): void;
  thaw(): void;
  logTail(): Promise<string>;
  /** Stops slapd and removes its folder. */
  stop(): Promise<void>;
}

const startTimeoutMs = 10_000;
const stopTimeoutMs = 3_000;

class Slapd implements RunningSlapd {
  readonly url: string;
  readonly ldapsUrl: string;
  readonly caFile: string;
  readonly suffix = LDAP_SUFFIX;
  readonly admin: LdapAccount;
  readonly reader: LdapAccount;
  readonly users: LdapUser[];
  readonly groups: LdapGroup[];
  caPem = '';
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  private readonly env: NodeJS.ProcessEnv;

  constructor(
    private readonly dir: string,
    readonly port: number,
    readonly ldapsPort: number,
    private readonly debug: string,
    users: LdapUser[],
    groups: LdapGroup[],
  ) {
    this.url = `ldap://127.0.0.1:${port}`;
    this.ldapsUrl = `ldaps://127.0.0.1:${ldapsPort}`;
    this.caFile = path.join(dir, 'ca.pem');
    this.admin = { dn: `cn=admin,${LDAP_SUFFIX}`, password: crypto.randomBytes(12).toString('hex') };
    this.reader = { dn: `cn=reader,${LDAP_SUFFIX}`, password: crypto.randomBytes(12).toString('hex') };
    this.users = users;
    this.groups = groups;
    this.env = ldapToolEnv(dir);
  }

  userDn(uid: string): string {
    return userDn(uid);
  }

  groupDn(cn: string): string {
    return groupDn(cn);
  }

  /** Certificates, cn=config (slapadd -n0) and the empty mdb folder; no server yet. */
  async prepare(): Promise<void> {
    await mkdir(path.join(this.dir, 'db'));
    await mkdir(path.join(this.dir, 'slapd.d'));
    await makeCertificates(this.dir);
    this.caPem = await readFile(this.caFile, 'utf8');
    await writeFile(path.join(this.dir, 'ldap.conf'), `TLS_CACERT ${this.caFile}\nTLS_REQCERT demand\n`);
    // ldap-utils read the bind password from this file (-y), so it never shows in a process list.
    await writeFile(path.join(this.dir, 'admin.pw'), this.admin.password, { mode: 0o600 });
    await writeFile(path.join(this.dir, 'config.ldif'), configLdif(this.dir, sshaHash(this.admin.password)));
    await run('slapadd', ['-n0', '-F', path.join(this.dir, 'slapd.d'), '-l', path.join(this.dir, 'config.ldif')], { label: 'slapadd -n0 (cn=config)', env: this.env, cwd: this.dir });
  }

  /** Entries go in through slapd (not slapadd), so the memberof overlay fills in memberOf. */
  async load(): Promise<void> {
    const base = ldifRecord([['dn', LDAP_SUFFIX], ['objectClass', 'dcObject'], ['objectClass', 'organization'], ['dc', 'example'], ['o', 'Example']]);
    const ous = ['people', 'groups'].map((ou) => ldifRecord([['dn', `ou=${ou},${LDAP_SUFFIX}`], ['objectClass', 'organizationalUnit'], ['ou', ou]])).join('');
    const reader = ldifRecord([
      ['dn', this.reader.dn], ['objectClass', 'organizationalRole'], ['objectClass', 'simpleSecurityObject'],
      ['cn', 'reader'], ['userPassword', sshaHash(this.reader.password)],
    ]);
    await this.modify(base + ous + reader + this.users.map(userLdif).join('') + this.groups.map(groupLdif).join(''));
  }

  async modify(ldif: string): Promise<void> {
    await run('ldapmodify', ['-a', '-x', '-H', this.url, '-D', this.admin.dn, '-y', path.join(this.dir, 'admin.pw')], { label: 'ldapmodify', env: this.env, cwd: this.dir, stdin: ldif });
  }

  async addUser(user: LdapUser): Promise<void> {
    await this.modify(userLdif(user));
    this.users.push(user);
  }

  async addGroup(group: LdapGroup): Promise<void> {
    await this.modify(groupLdif(group));
    this.groups.push({ cn: group.cn, members: [...group.members] });
  }

  private async changeMember(groupCn: string, uid: string, change: 'add' | 'delete'): Promise<void> {
    await this.modify(`${ldifLine('dn', groupDn(groupCn))}\nchangetype: modify\n${change}: member\n${ldifLine('member', userDn(uid))}\n\n`);
    const group = this.groups.find((candidate) => candidate.cn === groupCn);
    if (group) group.members = change === 'add' ? [...group.members, uid] : group.members.filter((member) => member !== uid);
  }

  addMember(groupCn: string, uid: string): Promise<void> {
    return this.changeMember(groupCn, uid, 'add');
  }

  removeMember(groupCn: string, uid: string): Promise<void> {
    return this.changeMember(groupCn, uid, 'delete');
  }

  async setPassword(uid: string, password: string): Promise<void> {
    await this.modify(`${ldifLine('dn', userDn(uid))}\nchangetype: modify\nreplace: userPassword\n${ldifLine('userPassword', sshaHash(password))}\n\n`);
    const user = this.users.find((candidate) => candidate.uid === uid);
    if (user) user.password = password;
  }

  async deleteUser(uid: string): Promise<void> {
    await this.modify(`${ldifLine('dn', userDn(uid))}\nchangetype: delete\n\n`);
    const index = this.users.findIndex((candidate) => candidate.uid === uid);
    if (index >= 0) this.users.splice(index, 1);
    for (const group of this.groups) group.members = group.members.filter((member) => member !== uid);
  }

  async logTail(): Promise<string> {
    const text = await readFile(path.join(this.dir, 'slapd.log'), 'utf8').catch(() => '');
    return text.split('\n').slice(-20).join('\n');
  }

  /** Starts slapd in the foreground (-d keeps it from forking) and waits for a real bind on both ports. */
  async launch(): Promise<void> {
    const log = await open(path.join(this.dir, 'slapd.log'), 'a');
    const urls = `${this.url}/ ${this.ldapsUrl}/`;
    // Its own process group, so stop() reaches it whatever it does. No -u/-g: it runs as whoever runs the tests.
    const child = spawn('slapd', ['-F', path.join(this.dir, 'slapd.d'), '-h', urls, '-d', this.debug], { detached: true, cwd: this.dir, env: this.env, stdio: ['ignore', log.fd, log.fd] });
    await log.close();
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const spawnError = new Promise<never>((_, reject) => child.once('error', reject));
    spawnError.catch(() => {});
    await Promise.race([this.waitUntilServing(), spawnError]);
  }

  private async waitUntilServing(): Promise<void> {
    const deadline = Date.now() + startTimeoutMs;
    for (const url of [this.url, this.ldapsUrl]) {
      for (;;) {
        if (this.child?.exitCode !== null || this.child.signalCode !== null) throw new Error(`slapd exited at start: ${await this.logTail()}`);
        try {
          await run('ldapwhoami', ['-x', '-H', url, '-D', this.admin.dn, '-y', path.join(this.dir, 'admin.pw')], { label: `ldapwhoami ${url}`, env: this.env, cwd: this.dir });
          break;
        } catch (error) {
          if (Date.now() > deadline) throw new Error(`slapd did not answer on ${url} within ${startTimeoutMs} ms: ${(error as Error).message}\n${await this.logTail()}`);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
    }
  }

  private running(): ChildProcess | undefined {
    const child = this.child;
    return child?.pid !== undefined && child.exitCode === null && child.signalCode === null ? child : undefined;
  }

  freeze(): void {
    const child = this.running();
    if (child) process.kill(-child.pid!, 'SIGSTOP');
  }

  thaw(): void {
    const child = this.running();
    if (child) process.kill(-child.pid!, 'SIGCONT');
  }

  /** SIGTERM to the process group (after SIGCONT, in case it is frozen), SIGKILL if it lingers. */
  async down(): Promise<void> {
    const child = this.running();
    if (!child) return;
    const signalGroup = (signal: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, signal);
      } catch {
        // the group is already gone
      }
    };
    signalGroup('SIGTERM');
    signalGroup('SIGCONT');
    const timedOut = await Promise.race([
      this.exited!.then(() => false),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(true), stopTimeoutMs).unref()),
    ]);
    if (timedOut) {
      signalGroup('SIGKILL');
      await this.exited;
    }
  }

  async up(): Promise<void> {
    if (this.running()) return;
    await this.launch();
  }

  async stop(): Promise<void> {
    await this.down();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** A slapd serving dc=example,dc=test on two fresh loopback ports; the caller must stop() it. */
export async function startSlapd(options: SlapdOptions = {}): Promise<RunningSlapd> {
  await requireCommand('slapd', 'slapd');
  await requireCommand('ldapwhoami', 'ldap-utils');
  await requireCommand('openssl', 'openssl');
  const users = [...DEFAULT_USERS, ...(options.users ?? [])].map((user) => ({ ...user }));
  const groups = [...DEFAULT_GROUPS, ...(options.groups ?? [])].map((group) => ({ cn: group.cn, members: [...group.members] }));
  // A port taken between freePort() and slapd's bind makes slapd exit: try again on other ports.
  for (let attempt = 1; ; attempt += 1) {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'slapd-'));
    const slapd = new Slapd(dir, await freePort(), await freePort(), options.debug ?? '0', users, groups);
    try {
      await slapd.prepare();
      await slapd.launch();
      await slapd.load();
      return slapd;
    } catch (error) {
      const log = await slapd.logTail();
      await slapd.stop();
      if (attempt < 3 && /Address already in use/.test(log)) continue;
      throw error;
    }
  }
}
