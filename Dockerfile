# Container image of the gateway: compiled in a build stage, run as a non-root user with production dependencies only.

FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npx --no-install tsc -p .

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /srv/gateway
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist/src ./dist/src
# Mount points: certs/ and htpasswd/ come from the host (read-only for `serve`; the `certs` and
# `user` commands write them), config/ may hold a gateway.yml. They belong to the image's user so
# that named volumes mounted there start out writable by it.
RUN mkdir -p certs htpasswd config && chown node:node certs htpasswd config
USER node
EXPOSE 5443
# The probe runs inside the container against its own loopback port, where the certificate's
# names (the public host) cannot match 127.0.0.1 and a certificate from a public CA would need
# the system store: it skips verification because it sends no credentials and trusts nothing it
# reads beyond the status code. Clients and tests always verify. Listens on 5443 (GATEWAY_LISTEN).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "require('node:https').get({host:'127.0.0.1',port:5443,path:'/healthz',rejectUnauthorized:false,timeout:4000},(r)=>process.exit(r.statusCode===200?0:1)).on('timeout',function(){this.destroy()}).on('error',()=>process.exit(1))"]
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["serve"]
