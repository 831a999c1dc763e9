// Reads the server name and ALPN protocols out of a TLS ClientHello, so ACME's tls-alpn-01 validation can be told from clients.

/** A TLS record header: content type, version, length. */
const RECORD_HEADER = 5;
const HANDSHAKE = 0x16;
const CLIENT_HELLO = 0x01;
const EXT_SERVER_NAME = 0x0000;
const EXT_ALPN = 0x0010;
/** The largest record a peer may send (2^14 plus expansion allowance). */
export const MAX_RECORD = RECORD_HEADER + 16384 + 2048;

export interface ClientHelloInfo {
  /** The SNI host name, lower case; undefined when none was sent. */
  serverName?: string;
  /** The ALPN protocols offered, in order. */
  protocols: string[];
}

/**
 * How many bytes the first TLS record occupies, once `data` holds its header: the amount to wait
 * for before parsing. Undefined when `data` is too short to tell or is not a handshake record.
 */
export function firstRecordLength(data: Buffer): number | undefined {
  if (data.length < RECORD_HEADER || data[0] !== HANDSHAKE) return undefined;
  return RECORD_HEADER + data.readUInt16BE(3);
}

/** A bounds-checked reader: every read past the end throws, so a lying length field ends parsing. */
class Reader {
  #offset = 0;
  constructor(private readonly data: Buffer) {}

  get remaining(): number {
    return this.data.length - this.#offset;
  }

  u8(): number {
    return this.bytes(1)[0]!;
  }

  u16(): number {
    return this.bytes(2).readUInt16BE(0);
  }

  u24(): number {
    return this.bytes(3).readUIntBE(0, 3);
  }

  bytes(length: number): Buffer {
    if (length > this.remaining) throw new RangeError('truncated');
    const slice = this.data.subarray(this.#offset, this.#offset + length);
    this.#offset += length;
    return slice;
  }

  /** A length-prefixed block (prefix of 1 or 2 bytes) as its own reader. */
  block(prefix: 1 | 2): Reader {
    return new Reader(this.bytes(prefix === 1 ? this.u8() : this.u16()));
  }
}

/**
 * Parses the ClientHello in the first TLS record of `data`. Undefined for anything else: another
 * record type, a hello split over several records, or malformed lengths. Those connections are
 * simply not ACME validations; the TLS server proper then handles (or refuses) them.
 */
export function parseClientHello(data: Buffer): ClientHelloInfo | undefined {
  const length = firstRecordLength(data);
  if (length === undefined || data.length < length) return undefined;
  try {
    const record = new Reader(data.subarray(RECORD_HEADER, length));
    if (record.u8() !== CLIENT_HELLO) return undefined;
    const hello = new Reader(record.bytes(record.u24()));
    hello.bytes(2 + 32); // legacy version, random
    hello.block(1); // session id
    hello.block(2); // cipher suites
    hello.block(1); // compression methods
    const info: ClientHelloInfo = { protocols: [] };
    if (hello.remaining === 0) return info;
    const extensions = hello.block(2);
    while (extensions.remaining > 0) {
      const type = extensions.u16();
      const body = extensions.block(2);
      if (type === EXT_SERVER_NAME) info.serverName = readServerName(body);
      else if (type === EXT_ALPN) info.protocols = readProtocols(body);
    }
    return info;
  } catch {
    return undefined;
  }
}

function readServerName(body: Reader): string | undefined {
  const list = body.block(2);
  while (list.remaining > 0) {
    const nameType = list.u8();
    const name = list.block(2);
    // Type 0 is host_name, the only type defined.
    if (nameType === 0) return name.bytes(name.remaining).toString('latin1').toLowerCase();
  }
  return undefined;
}

function readProtocols(body: Reader): string[] {
  const list = body.block(2);
  const protocols: string[] = [];
  while (list.remaining > 0) {
    const protocol = list.block(1);
    protocols.push(protocol.bytes(protocol.remaining).toString('latin1'));
  }
  return protocols;
}
