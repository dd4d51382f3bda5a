// The baseline of the IdP benchmark: panva's oidc-provider over TLS (node's https, TLS 1.3),
// with client_credentials and refresh_token, ES256 JWT access tokens (RFC 9068) through
// resource indicators, refresh tokens rotated on every use, the in-memory adapter (its bound
// raised, see below). One node process, as node runs by default.
//
//   node server.mjs DIR FAMILIES
//
// reads DIR/tls.pem, DIR/tls.key; mints FAMILIES refresh tokens (each in a grant of its own, as
// a sign-in would leave it), writes them one a line to DIR/node-refresh.txt, then listens on
// 127.0.0.1 port 0 and writes the address to DIR/node.addr. It stops when its parent closes
// its standard input.
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import { createServer } from 'node:https';
import { join } from 'node:path';

import Provider from 'oidc-provider';
// The provider's own in-memory adapter and its own LRU, with the bound raised: the default of
// 1,000 entries would evict live grants and refresh tokens of the families minted below.
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import LRU from 'oidc-provider/lib/helpers/lru.js';

const [dir, familiesArg] = process.argv.slice(2);
if (!dir || !familiesArg) {
  process.stderr.write('usage: node server.mjs DIR FAMILIES\n');
  process.exit(2);
}
const families = Number.parseInt(familiesArg, 10);
const storage = new LRU({ maxSize: 10_000_000 });

const CLIENT_ID = 'bench-app';
const CLIENT_SECRET = 'bench-secret-0123456789';
const RESOURCE = 'urn:tianping:bench';
const ACCOUNT = 'judge-0001';

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'bench-es256' };

const provider = new Provider('https://idp.node.localhost', {
  adapter: (model) => new MemoryAdapter(model, storage),
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    grant_types: ['client_credentials', 'refresh_token', 'authorization_code'],
    response_types: ['code'],
    redirect_uris: ['https://case.example/cb'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'openid offline_access cases.read',
  }],
  jwks: { keys: [jwk] },
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  cookies: { keys: ['bench-cookie-key-0123456789abcdef'] },
  scopes: ['openid', 'offline_access', 'cases.read'],
  rotateRefreshToken: true,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => {
        if (resource !== RESOURCE) {
          throw new Provider.errors.InvalidTarget();
        }
        return {
          scope: 'cases.read',
          audience: 'tianping',
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
  ttl: {
    ClientCredentials: 300,
    AccessToken: 300,
    RefreshToken: 8 * 3600,
    Grant: 8 * 3600,
  },
  findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
});
provider.on('server_error', (_ctx, err) => process.stderr.write(`server_error: ${err.stack}\n`));

// Refresh tokens as the authorization code grant would leave them: one grant per sign-in, the
// resource's scope granted, the resource recorded on the token.
const client = await provider.Client.find(CLIENT_ID);
const tokens = [];
for (let i = 0; i < families; i += 1) {
  const grant = new provider.Grant({ accountId: ACCOUNT, clientId: CLIENT_ID });
  grant.addResourceScope(RESOURCE, 'cases.read');
  const grantId = await grant.save();
  const rt = new provider.RefreshToken({
    accountId: ACCOUNT,
    client,
    grantId,
    gty: 'authorization_code',
    scope: 'cases.read',
    resource: RESOURCE,
    authTime: Math.floor(Date.now() / 1000),
  });
  tokens.push(await rt.save());
}
writeFileSync(join(dir, 'node-refresh.txt'), `${tokens.join('\n')}\n`);

const server = createServer({
  cert: readFileSync(join(dir, 'tls.pem')),
  key: readFileSync(join(dir, 'tls.key')),
  minVersion: 'TLSv1.3',
  // AES-128-GCM first, by the server's order, as tianping-net prefers it.
  ciphers: 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256',
  honorCipherOrder: true,
}, provider.callback());
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  writeFileSync(join(dir, 'node.addr.tmp'), `127.0.0.1:${port}\n`);
  renameSync(join(dir, 'node.addr.tmp'), join(dir, 'node.addr'));
});
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
