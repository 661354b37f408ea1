"""The provider's claims, and its misbehaviour on demand.

Claims per user live in this process's memory (`CLAIMS`, set through the admin API): a test
provider starts empty each time. `MISBEHAVIOUR` names the one fault the next ID tokens carry.
"""

import json
import time
from typing import Any

from jwcrypto import jwk, jwt
from oauth2_provider.oauth2_validators import OAuth2Validator

CLAIMS: dict[str, dict[str, Any]] = {}  # username -> claims
MISBEHAVIOUR: dict[str, str] = {"mode": ""}
MODES = {"", "bad_signature", "wrong_audience", "expired", "wrong_nonce", "wrong_issuer"}


class ClaimsValidator(OAuth2Validator):  # type: ignore[misc]
    # Every claim goes into the ID token and userinfo, whatever the scope (a test provider).
    oidc_claim_scope = None

    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        user = request.user
        claims: dict[str, Any] = {"preferred_username": user.username}
        if user.email:
            claims.update(email=user.email, email_verified=True)
        claims.update(CLAIMS.get(user.username, {}))
        return claims

    def finalize_id_token(self, id_token: Any, token: Any, token_handler: Any, request: Any) -> str:
        serialized: str = super().finalize_id_token(id_token, token, token_handler, request)
        mode = MISBEHAVIOUR["mode"]
        if not mode:
            return serialized
        header = {"typ": "JWT", "alg": "RS256", "kid": request.client.jwk_key.thumbprint()}
        claims = json.loads(jwt.JWT(jwt=serialized, key=request.client.jwk_key).claims)
        key = request.client.jwk_key
        now = int(time.time())
        if mode == "bad_signature":
            key = jwk.JWK.generate(kty="RSA", size=2048)  # the right kid, another key
        elif mode == "wrong_audience":
            claims["aud"] = "another-client"
        elif mode == "expired":
            claims.update(iat=now - 3600, exp=now - 1800)
        elif mode == "wrong_nonce":
            claims["nonce"] = "not-the-nonce-you-sent"
        elif mode == "wrong_issuer":
            claims["iss"] = "http://issuer.invalid"
        token_out = jwt.JWT(header=json.dumps(header), claims=json.dumps(claims))
        token_out.make_signed_token(key)
        return str(token_out.serialize())
