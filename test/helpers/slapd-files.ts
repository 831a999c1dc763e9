// The files a test slapd runs from: its CA and server certificate, cn=config and directory entries as LDIF, and the ldap-utils runner.
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

export const LDAP_SUFFIX = 'dc=example,dc=test';
export const LDAP_PEOPLE_DN = `ou=people,${LDAP_SUFFIX}`;
export const LDAP_GROUPS_DN = `ou=groups,${LDAP_SUFFIX}`;

export interface LdapUser {
  uid: string;
  password: string;
  cn?: string;
  sn?: string;
  mail?: string;
}

export interface LdapGroup {
  cn: string;
  /** uids of members, all under ou=people. */
  members: string[];
}

/** RFC 4514: escapes an attribute value for use inside a DN. */
export function escapeDnValue(value: string): string {
  const chars = [...value];
  let out = '';
  for (const [index, char] of chars.entries()) {
    const first = index === 0;
    const last = index === chars.length - 1;
    if ('\\,+"<>;=\0'.includes(char) || (first && (char === ' ' || char === '#')) || (last && char === ' ')) {
      out += [...Buffer.from(char, 'utf8')].map((byte) => `\\${byte.toString(16).toUpperCase().padStart(2, '0')}`).join('');
    } else {
      out += char;
    }
  }
  return out;
}

/** {SSHA}: base64(SHA-1(password + salt) + salt), the scheme slappasswd writes by default. */
export function sshaHash(password: string): string {
  const salt = crypto.randomBytes(8);
  const digest = crypto.createHash('sha1').update(password, 'utf8').update(salt).digest();
  return `{SSHA}${Buffer.concat([digest, salt]).toString('base64')}`;
}

/** One LDIF line; values that LDIF cannot carry as they are (RFC 2849 SAFE-STRING) go base64. */
export function ldifLine(attribute: string, value: string): string {
  const safe = /^[\x01-\x09\x0b\x0c\x0e-\x1f\x21-\x39\x3b\x3d-\x7f][\x01-\x09\x0b\x0c\x0e-\x7f]*$/.test(value) && !value.endsWith(' ');
  return safe ? `${attribute}: ${value}` : `${attribute}:: ${Buffer.from(value, 'utf8').toString('base64')}`;
}

export function ldifRecord(lines: Array<[string, string]>): string {
  return `${lines.map(([attribute, value]) => ldifLine(attribute, value)).join('\n')}\n\n`;
}

export const userDn = (uid: string) => `uid=${escapeDnValue(uid)},${LDAP_PEOPLE_DN}`;
export const groupDn = (cn: string) => `cn=${escapeDnValue(cn)},${LDAP_GROUPS_DN}`;

export function userLdif(user: LdapUser): string {
  const lines: Array<[string, string]> = [
    ['dn', userDn(user.uid)],
    ['objectClass', 'inetOrgPerson'],
    ['uid', user.uid],
    ['cn', user.cn ?? user.uid],
    ['sn', user.sn ?? user.uid],
  ];
  if (user.mail !== undefined) lines.push(['mail', user.mail]);
  lines.push(['userPassword', sshaHash(user.password)]);
  return ldifRecord(lines);
}

export function groupLdif(group: LdapGroup): string {
  if (group.members.length === 0) throw new Error(`groupOfNames ${group.cn} needs at least one member`);
  return ldifRecord([
    ['dn', groupDn(group.cn)],
    ['objectClass', 'groupOfNames'],
    ['cn', group.cn],
    ...group.members.map((uid): [string, string] => ['member', userDn(uid)]),
  ]);
}

/** cn=config as LDIF for slapadd -n0: modules, schema, TLS files, one mdb database with the memberof overlay. */
export function configLdif(dir: string, adminHash: string): string {
  const readerDn = `cn=reader,${LDAP_SUFFIX}`;
  return `dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: ${dir}/slapd.pid
olcArgsFile: ${dir}/slapd.args
olcLogLevel: none
olcToolThreads: 1
olcTLSCACertificateFile: ${dir}/ca.pem
olcTLSCertificateFile: ${dir}/server.pem
olcTLSCertificateKeyFile: ${dir}/server.key

dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend
olcAccess: {0}to dn.exact="" by * read
olcAccess: {1}to dn.base="cn=Subschema" by * read

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by * none

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif

include: file:///etc/ldap/schema/cosine.ldif

include: file:///etc/ldap/schema/inetorgperson.ldif

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: {0}back_mdb
olcModuleLoad: {1}memberof

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcDbMaxSize: 104857600
olcSuffix: ${LDAP_SUFFIX}
olcDbDirectory: ${dir}/db
olcRootDN: cn=admin,${LDAP_SUFFIX}
olcRootPW: ${adminHash}
olcDbIndex: objectClass eq
olcDbIndex: uid,cn,mail eq
olcDbIndex: member,memberOf eq
olcAccess: {0}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {1}to dn.subtree="${LDAP_SUFFIX}" by dn.exact="${readerDn}" read by self read by * none

dn: olcOverlay={0}memberof,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOf
olcOverlay: {0}memberof
olcMemberOfRefInt: TRUE
olcMemberOfGroupOC: groupOfNames
olcMemberOfMemberAD: member
olcMemberOfMemberOfAD: memberOf
`;
}

/**
 * Runs an ldap-utils or openssl command; a non-zero exit rejects with `label` and its stderr. Unlike
 * clients.ts runCommand, a command that exits before reading its stdin (ldapwhoami, a refused
 * ldapmodify) is no EPIPE that crashes the test process.
 */
export function run(command: string, args: string[], options: { label: string; env?: NodeJS.ProcessEnv; cwd?: string; stdin?: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(command, args, { env: options.env ?? process.env, cwd: options.cwd }, (error, stdout, stderr) => {
      if (error) {
        reject(new Error(`${options.label} failed (${error.code ?? error.signal ?? 'unknown status'}): ${stderr.trim() || stdout.trim() || 'no output'}`));
        return;
      }
      resolve(stdout);
    });
    child.stdin?.on('error', () => {});
    child.stdin?.end(options.stdin ?? '');
  });
}

/** A CA and a server certificate for 127.0.0.1 and localhost, both EC P-256, valid two days. */
export async function makeCertificates(dir: string): Promise<void> {
  const file = (name: string) => path.join(dir, name);
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', file('ca.key'), '-out', file('ca.pem'), '-days', '2', '-subj', '/CN=Test LDAP CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ], { label: 'openssl req (LDAP CA)' });
  await run('openssl', [
    'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', file('server.key'), '-out', file('server.csr'), '-subj', '/CN=localhost',
  ], { label: 'openssl req (LDAP server)' });
  await writeFile(file('server.ext'), [
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
    '',
  ].join('\n'));
  await run('openssl', [
    'x509', '-req', '-in', file('server.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'),
    '-set_serial', `0x${crypto.randomBytes(8).toString('hex')}`, '-days', '2', '-extfile', file('server.ext'), '-out', file('server.pem'),
  ], { label: 'openssl x509 (LDAP server)' });
}

/**
 * ldap-utils read ~/.ldaprc, ./ldaprc, /etc/ldap/ldap.conf and LDAP* variables; they get our own
 * ldap.conf (trusting only our CA) and a HOME and working folder of ours instead.
 */
export function ldapToolEnv(dir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('LDAP')) env[key] = value;
  return { ...env, HOME: dir, LDAPCONF: path.join(dir, 'ldap.conf') };
}
