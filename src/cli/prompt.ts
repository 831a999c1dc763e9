// Reads a password for the command line: piped in on stdin, or typed at a terminal without echo.

import { StringDecoder } from 'node:string_decoder';
import { CliError } from '../errors.js';

export interface ReadPasswordOptions {
  /** Read all of stdin (like `docker login --password-stdin`) instead of prompting. */
  fromStdin: boolean;
  /** Ask twice at a terminal and refuse when the answers differ. */
  confirm: boolean;
  input?: NodeJS.ReadableStream;
  /** Where prompts go; stderr by default, so stdout stays clean for scripts. */
  output?: NodeJS.WritableStream;
}

/** Far more than any password; stops a mistaken pipe (a whole file) from filling memory. */
const maxStdinBytes = 64 * 1024;

export async function readPassword(options: ReadPasswordOptions): Promise<string> {
  const input = options.input ?? process.stdin;
  const output = options.output ?? process.stderr;
  if (options.fromStdin) return readAllWithoutTrailingNewline(input);
  if (!isTerminal(input)) {
    throw new CliError('standard input is not a terminal: pipe the password in and pass --password-stdin');
  }
  const reader = new HiddenLineReader(input);
  try {
    const password = await reader.prompt(output, 'Password: ');
    if (!options.confirm) return password;
    const repeated = await reader.prompt(output, 'Repeat password: ');
    if (repeated !== password) throw new CliError('the passwords do not match');
    return password;
  } finally {
    reader.close();
  }
}

async function readAllWithoutTrailingNewline(input: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of input) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    size += bytes.length;
    if (size > maxStdinBytes) throw new CliError(`the password on stdin is longer than ${maxStdinBytes} bytes`);
    chunks.push(bytes);
  }
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

interface TerminalInput extends NodeJS.ReadableStream {
  isTTY: true;
  setRawMode(mode: boolean): unknown;
}

function isTerminal(input: NodeJS.ReadableStream): input is TerminalInput {
  const candidate = input as Partial<TerminalInput>;
  return candidate.isTTY === true && typeof candidate.setRawMode === 'function';
}

/** Raw-mode terminal input turned into lines; nothing typed is echoed. */
class HiddenLineReader {
  readonly #input: TerminalInput;
  readonly #decoder = new StringDecoder('utf8');
  readonly #lines: string[] = [];
  #current = '';
  #afterCarriageReturn = false;
  #failure: CliError | undefined;
  #waiting: (() => void) | undefined;

  constructor(input: TerminalInput) {
    this.#input = input;
    input.setRawMode(true);
    input.on('data', this.#onData);
    input.on('end', this.#onEnd);
    input.resume();
  }

  async prompt(output: NodeJS.WritableStream, label: string): Promise<string> {
    output.write(label);
    try {
      return await this.#nextLine();
    } finally {
      output.write('\n');
    }
  }

  close(): void {
    this.#input.off('data', this.#onData);
    this.#input.off('end', this.#onEnd);
    this.#input.setRawMode(false);
    this.#input.pause();
  }

  async #nextLine(): Promise<string> {
    for (;;) {
      if (this.#failure !== undefined) throw this.#failure;
      const line = this.#lines.shift();
      if (line !== undefined) return line;
      await new Promise<void>((resolve) => (this.#waiting = resolve));
    }
  }

  #wake(): void {
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.();
  }

  readonly #onData = (chunk: Buffer | string): void => {
    const text = typeof chunk === 'string' ? chunk : this.#decoder.write(chunk);
    for (const character of text) this.#take(character);
    this.#wake();
  };

  readonly #onEnd = (): void => {
    this.#failure ??= new CliError('input ended before a password was entered');
    this.#wake();
  };

  #take(character: string): void {
    const afterCarriageReturn = this.#afterCarriageReturn;
    this.#afterCarriageReturn = character === '\r';
    if (this.#failure !== undefined) return;
    switch (character) {
      case '\n':
        if (afterCarriageReturn) return; // the second half of a pasted CRLF
        this.#endLine();
        return;
      case '\r':
        this.#endLine();
        return;
      case '\u0003': // Ctrl-C
        this.#failure = new CliError('cancelled', 130);
        return;
      case '\u0004': // Ctrl-D
        this.#failure = new CliError('cancelled: no password entered');
        return;
      case '\u0015': // Ctrl-U clears what was typed so far
        this.#current = '';
        return;
      case '\u007f':
      case '\b':
        this.#current = Array.from(this.#current).slice(0, -1).join('');
        return;
      default:
        if (character >= ' ') this.#current += character;
    }
  }

  #endLine(): void {
    this.#lines.push(this.#current);
    this.#current = '';
  }
}
