"""The kinds of findings of the secrets scan (:mod:`gitstore.rules.secrets`): names only.

Pure data, apart from :mod:`gitstore.rules.detectors` (the adapter that drives
detect-secrets' plugins and re-exports :data:`PLUGIN_KINDS`), so that a secrets policy
can be read and checked (:class:`gitstore.rules.policy.Policy`, at every store open)
without loading detect-secrets, which only a scan needs.

Invariant: every value is unique and none is a kind of gitstore's own detectors
(``basic_auth``, ``bearer_token``, ``connection_string``, the keyword and entropy
kinds); ``tests/test_detectors_contract.py`` checks the plugin names against the
installed detect-secrets.
"""

from __future__ import annotations

__all__ = ["CREDENTIAL_KINDS", "ENTROPY", "KEYWORD", "PII_KINDS", "PLUGIN_KINDS"]

#: detect-secrets plugin class -> our short, stable kind.
PLUGIN_KINDS: dict[str, str] = {
    "AWSKeyDetector": "aws_access_key", "ArtifactoryDetector": "artifactory_token",
    "AzureStorageKeyDetector": "azure_storage_key", "BasicAuthDetector": "password_in_url",
    "CloudantDetector": "cloudant_credential", "DiscordBotTokenDetector": "discord_token",
    "GitHubTokenDetector": "github_token", "GitLabTokenDetector": "gitlab_token",
    "IbmCloudIamDetector": "ibm_cloud_iam_key", "IbmCosHmacDetector": "ibm_cos_hmac",
    "JwtTokenDetector": "jwt", "MailchimpDetector": "mailchimp_key", "NpmDetector": "npm_token",
    "OpenAIDetector": "openai_key", "PrivateKeyDetector": "private_key",
    "PypiTokenDetector": "pypi_token", "SendGridDetector": "sendgrid_key",
    "SlackDetector": "slack_token", "SoftlayerDetector": "softlayer_credential",
    "SquareOAuthDetector": "square_oauth_secret", "StripeDetector": "stripe_key",
    "TelegramBotTokenDetector": "telegram_token", "TwilioKeyDetector": "twilio_key",
}

#: gitstore's own credential kinds: the keyword patterns and high-entropy tokens.
KEYWORD, ENTROPY = "generic_secret_keyword", "high_entropy_string"
#: Every credential kind a policy may name.
CREDENTIAL_KINDS = frozenset({*PLUGIN_KINDS.values(), "basic_auth", "bearer_token",
                              "connection_string", KEYWORD, ENTROPY})
#: Every personal-data kind a policy may name.
PII_KINDS = frozenset({"card_number", "email", "phone"})
