// Finds a free TCP port on the loopback interface for servers a test starts.
import { createServer } from 'node:net';

/** A port that was free a moment ago: listen on 127.0.0.1:0, read the port, close. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (typeof address !== 'object' || address === null) {
        server.close();
        reject(new Error('listening socket has no port'));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}
