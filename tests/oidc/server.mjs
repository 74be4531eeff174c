// A real OpenID provider (the OpenID-certified `oidc-provider` package) on loopback, for
// Sallyport's single sign-on tests: one public client (`sallyport`: authorization code with
// PKCE through a loopback redirect, the device authorization grant, refresh tokens), the test
// users and their `groups` claim. Started by the tests (through tests/src/oidc.rs, after
// `npm ci`); prints `OIDC_ISSUER=<url>` once it listens, and stops when its standard
// input closes (so it never outlives the test that started it).
//
// Users: alice (groups: dba), bob (groups: marketing), carol (groups: dba; her ID tokens live
// OIDC_SHORT_TTL seconds, default 2, for the expiry tests), dana (groups: helpdesk, which only
// gives a role). The password is not checked: the provider's development interactions ask for
// a login name only (and one of these).
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const USERS = {
  alice: ['dba'],
  bob: ['marketing'],
  carol: ['dba'],
  dana: ['helpdesk'],
};
const SHORT_TTL = Number(process.env.OIDC_SHORT_TTL ?? 2);

function signingKeys() {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const stamp = Date.now().toString(36);
  return [
    { ...rsa, kid: `rsa-${stamp}`, alg: 'RS256', use: 'sig' },
    { ...ec, kid: `ec-${stamp}`, alg: 'ES256', use: 'sig' },
  ];
}

const server = createServer();
await new Promise((resolve) => server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'sallyport',
      client_name: 'Sallyport',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
      // Any port on loopback (RFC 8252 section 7.3): the app picks a free one each time.
      redirect_uris: ['http://127.0.0.1/callback'],
      id_token_signed_response_alg: process.env.OIDC_ALG ?? 'RS256',
    },
  ],
  jwks: { keys: signingKeys() },
  cookies: { keys: [generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }).x] },
  claims: { openid: ['sub'], profile: ['preferred_username', 'name', 'groups'] },
  // The groups in the ID token itself: the router reads it from there.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
  },
  enabledJWA: { idTokenSigningAlgValues: ['RS256', 'ES256'] },
  async findAccount(_ctx, id) {
    if (!Object.hasOwn(USERS, id)) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, name: id, groups: USERS[id] };
      },
    };
  },
  ttl: {
    IdToken: (_ctx, token) => (token?.available?.sub === 'carol' ? SHORT_TTL : 600),
    AccessToken: 600,
    AuthorizationCode: 60,
    DeviceCode: 600,
    Grant: 3600,
    Interaction: 600,
    RefreshToken: 3600,
    Session: 3600,
  },
});
provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err));
server.on('request', provider.callback());

console.log(`OIDC_ISSUER=${issuer}`);
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
