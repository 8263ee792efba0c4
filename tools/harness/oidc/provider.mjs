// node-oidc-provider for parkfleet's tests, started by tools/harness/oidcprovider.py.
//
// Configuration comes from one JSON file (argv[2]) written by the launcher:
//   {"port", "issuer", "initial_access_token", "keys": [private JWKs, newest first],
//    "resources": {"<resource indicator URI>": "<audience>"}, "default_resource", "scopes",
//    "access_token_ttl_s"}
// The provider has the client credentials grant, RFC 7591 registration behind an initial access
// token, RFC 7592 registration management, and RFC 9068 JWT access tokens for each resource
// (RFC 8707 resource indicators; a resource indicator must be an absolute URI, §2).
//
// Harness controls under /_harness/ (loopback only, never part of a real provider):
//   PUT /_harness/keys {"keys": [...]}  new signing keys (newest first): a new Provider instance
//       is built on them and takes over the port; registered clients survive because every
//       instance stores into the one `SharedStore` below.
//   GET /_harness/stats                {"jwks": n, "discovery": n} requests served so far.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
// The package is installed outside the source tree (make's node target: build/node/).
const nodeRoot = process.env.PARK_NODE_MODULES_ROOT;
const entry = createRequire(join(nodeRoot, 'package.json')).resolve('oidc-provider');
const { default: Provider, errors } = await import(pathToFileURL(entry).href);

const stats = { jwks: 0, discovery: 0 };

// The provider's storage (clients, registration access tokens), shared by the Provider
// instances a key rotation creates. Expiry as the adapter interface asks (expiresIn seconds).
const storage = new Map();

class SharedStore {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : Infinity;
    storage.set(this.key(id), { payload, expiresAt });
  }

  async find(id) {
    const entry = storage.get(this.key(id));
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= Date.now()) {
      storage.delete(this.key(id));
      return undefined;
    }
    return entry.payload;
  }

  async findByUid(uid) {
    for (const { payload } of storage.values()) if (payload.uid === uid) return payload;
    return undefined;
  }

  async findByUserCode(userCode) {
    for (const { payload } of storage.values()) if (payload.userCode === userCode) return payload;
    return undefined;
  }

  async consume(id) {
    const payload = await this.find(id);
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    storage.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, { payload }] of storage) if (payload.grantId === grantId) storage.delete(key);
  }
}

function build(keys) {
  const provider = new Provider(config.issuer, {
    adapter: SharedStore,
    jwks: { keys },
    scopes: ['openid', ...config.scopes],
    clientDefaults: {
      grant_types: ['client_credentials'],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      // Registration checks this against the keys even for clients that never get ID tokens.
      id_token_signed_response_alg: keys[0].alg,
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      registration: {
        enabled: true,
        initialAccessToken: config.initial_access_token,
      },
      registrationManagement: { enabled: true, rotateRegistrationAccessToken: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => config.default_resource,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => {
          const audience = config.resources[resource];
          if (audience === undefined) {
            throw new errors.InvalidTarget('unknown resource indicator');
          }
          return {
            scope: config.scopes.join(' '),
            audience,
            accessTokenTTL: config.access_token_ttl_s,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: keys[0].alg } },
          };
        },
      },
    },
  });
  return provider.callback();
}

let handler = build(config.keys);

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

async function control(req, res) {
  if (req.method === 'PUT' && req.url === '/_harness/keys') {
    const { keys } = await readJson(req);
    handler = build(keys);
    res.writeHead(204).end();
  } else if (req.method === 'GET' && req.url === '/_harness/stats') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(stats));
  } else {
    res.writeHead(404).end();
  }
}

createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (path.startsWith('/_harness/')) {
    control(req, res).catch((error) => {
      res.writeHead(400).end(String(error));
    });
    return;
  }
  if (path === '/jwks') stats.jwks += 1;
  if (path.startsWith('/.well-known/')) stats.discovery += 1;
  handler(req, res);
}).listen(config.port, '127.0.0.1', () => {
  console.log(`oidc-provider ${config.issuer} listening`);
});
