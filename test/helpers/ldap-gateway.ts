// A test gateway in front of a test slapd: the provider's settings, its password and CA files, and the access rules naming directory groups.

import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { RunningSlapd } from './slapd.js';
import { LDAP_GROUPS_DN, LDAP_PEOPLE_DN } from './slapd-files.js';

export interface LdapProviderOptions {
  /** How the gateway reaches slapd. */
  tls: 'ldaps' | 'starttls';
  /** Groups from a search under ou=groups instead of the memberOf attribute. */
  groupSearch?: boolean;
  /** Leave ca_file out: the directory's certificate is then checked against the system's CAs. */
  withoutCa?: boolean;
  /** Another service account password than the right one. */
  bindPassword?: string;
}

/**
 * Writes the bind password and CA files into `dir` and returns the gateway YAML with one `corp`
 * provider: directory group "Registry Admins" maps to access group admins, others keep their names.
 */
export async function ldapProviderConfig(slapd: RunningSlapd, dir: string, options: LdapProviderOptions): Promise<string> {
  const passwordFile = path.join(dir, 'ldap-bind-password');
  const caFile = path.join(dir, 'ldap-ca.pem');
  await writeFile(passwordFile, `${options.bindPassword ?? slapd.reader.password}\n`, { mode: 0o600 });
  await writeFile(caFile, slapd.caPem);
  const lines = [
    'providers:',
    '  - type: ldap',
    '    name: corp',
    `    url: ${options.tls === 'ldaps' ? slapd.ldapsUrl : slapd.url}`,
    ...(options.tls === 'starttls' ? ['    start_tls: true'] : []),
    ...(options.withoutCa ? [] : [`    ca_file: ${caFile}`]),
    `    bind_dn: ${slapd.reader.dn}`,
    `    bind_password_file: ${passwordFile}`,
    `    user_base_dn: ${LDAP_PEOPLE_DN}`,
    '    user_filter: (&(objectClass=inetOrgPerson)(uid={user}))',
    ...(options.groupSearch ? [`    group_base_dn: ${LDAP_GROUPS_DN}`, '    group_filter: (&(objectClass=groupOfNames)(member={dn}))'] : []),
    '    group_map:',
    '      Registry Admins: admins',
    '    timeout: 2',
  ];
  return `${lines.join('\n')}\n`;
}

/** Rules that name only groups for directory users: developers push app/**, ops pull it, admins do everything. */
export const ldapAccessRules = `
groups:
  developers: []
  ops: []
  admins: [admin]
rules:
  - groups: [developers]
    repositories: ["app/**"]
    actions: [pull, push]
  - groups: [ops]
    repositories: ["app/**"]
    actions: [pull]
  - groups: [admins]
    repositories: ["**"]
    actions: ["*", catalog]
`;
