// An OpenID provider for the e2e tests (node-oidc-provider), started by
// e2e/testkit/src/oidc.rs: `node provider.mjs <port> <redirect-uri>...`. It listens on
// 127.0.0.1; its issuer is `http://127.0.0.1:<port>`, or `http://<OIDC_ISSUER_HOST>:<port>`.
//
// Two confidential clients with the same secret: `gantry` (access tokens live 1 h) and
// `gantry-short` (access tokens live 20 s, so a proxy refreshes them on every request).
// Both get refresh tokens without asking for `offline_access`. The login and consent
// interactions finish at once for the account `alice`; every other endpoint is the package's.
import http from 'node:http';
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const redirectUris = process.argv.slice(3);
const issuer = `http://${process.env.OIDC_ISSUER_HOST || '127.0.0.1'}:${port}`;
const ACCOUNT = 'alice';
const SECRET = 'e2e-client-secret';

const client = (id) => ({
  client_id: id,
  client_secret: SECRET,
  redirect_uris: redirectUris,
  post_logout_redirect_uris: redirectUris,
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
});

const provider = new Provider(issuer, {
  clients: [client('gantry'), client('gantry-short')],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: true } },
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: `${id}@example.com` }),
  }),
  claims: { openid: ['sub'], email: ['email'] },
  issueRefreshToken: async (_ctx, c) => c.grantTypeAllowed('refresh_token'),
  ttl: {
    AccessToken: (_ctx, _token, c) => (c && c.clientId === 'gantry-short' ? 20 : 3600),
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 24 * 3600,
    Grant: 24 * 3600,
    Interaction: 600,
    Session: 24 * 3600,
  },
  cookies: { keys: ['e2e-cookie-key'] },
});

const callback = provider.callback();

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  let result;
  if (prompt.name === 'login') {
    result = { login: { accountId: ACCOUNT } };
  } else {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

http
  .createServer((req, res) => {
    if (req.url.startsWith('/interaction/')) {
      interaction(req, res).catch((e) => {
        res.statusCode = 500;
        res.end(String(e));
      });
      return;
    }
    callback(req, res);
  })
  .listen(port, '127.0.0.1', () => console.log(`listening on ${issuer}`));
