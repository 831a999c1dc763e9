// Worker-thread body for bcrypt: runs inside the piscina pool so hashing never blocks the event loop.

import bcrypt from 'bcryptjs';

export interface VerifyTask {
  password: string;
  hash: string;
}

export interface HashTask {
  password: string;
  cost: number;
}

export type PasswordTask = VerifyTask | HashTask;

/** Compares against a stored hash, or hashes a new password in the `$2y$` form `htpasswd -B` writes. */
export default function runPasswordTask(task: PasswordTask): boolean | string {
  if (typeof task.password !== 'string') throw new TypeError('password must be a string');
  if ('hash' in task) return verify(task);
  return hash(task);
}

function verify({ password, hash }: VerifyTask): boolean {
  if (typeof hash !== 'string') throw new TypeError('hash must be a string');
  return bcrypt.compareSync(password, hash);
}

function hash({ password, cost }: HashTask): string {
  if (!Number.isInteger(cost) || cost < 4 || cost > 31) {
    throw new RangeError('bcrypt cost must be an integer from 4 to 31');
  }
  // bcryptjs writes $2b$; $2y$ is the same algorithm and the prefix Apache's htpasswd -B writes.
  return bcrypt.hashSync(password, cost).replace(/^\$2[ab]\$/, '$2y$');
}
