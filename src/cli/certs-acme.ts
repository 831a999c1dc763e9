// `gateway certs --acme`: one ACME issuance in the foreground, each step printed, the ACME server's error text shown as is.

import path from 'node:path';
import { loadConfig } from '../config/config.js';
import { editFileExclusively, FileLockError } from '../config/files.js';
import { settingName } from '../config/settings.js';
import { CliError } from '../errors.js';
import { AcmeChallenges } from '../tls/acme/challenges.js';
import { readAcmeCa } from '../tls/acme/from-config.js';
import { issueAndStore } from '../tls/acme/manager.js';
import { AcmeError } from '../tls/acme/order.js';
import { startStandaloneResponder, type Responder } from '../tls/acme/standalone.js';
import { acmePaths } from '../tls/acme/store.js';

export async function issueWithAcme(options: { config?: string }): Promise<void> {
  const { config } = loadConfig({ file: options.config, env: process.env, cwd: process.cwd() });
  const acme = config.acme;
  if (!acme) {
    throw new CliError(`ACME is off: set ${settingName('acme')} to on, with ${settingName('acme_domains')} or ${settingName('public_url')} naming the host`, 2);
  }
  const paths = acmePaths(path.dirname(config.tlsCert));
  const listen = acme.challenge === 'http-01' ? config.httpListen! : config.listen;
  const where = `${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${listen.port}`;
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const challenges = new AcmeChallenges();
  let responder: Responder;
  try {
    responder = await startStandaloneResponder(acme.challenge, listen, challenges);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new CliError(
      `cannot listen on ${where} for the ${acme.challenge} challenge (${code}). A running gateway orders by itself (at start and at renewal): ` +
        'read its log, or stop it and run this again',
      1,
    );
  }
  say(`answering ${acme.challenge} on ${where}; directory ${acme.directoryUrl}`);
  try {
    const certificate = await editFileExclusively(paths.cert, () =>
      issueAndStore({ ...acme, ca: readAcmeCa(acme.caFile), paths, challenges, now: Date.now(), step: (message) => say(`acme: ${message}`) }),
    );
    say(`\nwrote ${paths.cert} (key ${paths.key})`);
    say(`  names:   ${certificate.names.join(', ')}`);
    say(`  issuer:  ${certificate.issuer}`);
    say(`  expires: ${certificate.notAfter.toISOString()}`);
    say('A running gateway with the same certs/ folder serves it after SIGHUP, or at its next check.');
  } catch (error) {
    if (error instanceof AcmeError) {
      throw new CliError(`ACME ${error.step} failed${error.domain ? ` for ${error.domain}` : ''}: ${error.message}`, 1);
    }
    if (error instanceof FileLockError) throw new CliError(`${error.message} (a gateway is ordering right now)`, 1);
    throw error;
  } finally {
    await responder.close();
  }
}
