# ruff: noqa: E501
"""Generated from detect-secrets 1.5.0 by ``python -m gitstore.rules.detectors --write``.

Do not edit. What the first look of a secrets scan (:mod:`gitstore.rules.gate`)
needs from detect-secrets, as literals; ``tests/test_detectors_gate.py`` fails
when this file and the installed detect-secrets disagree.
"""

DETECT_SECRETS_VERSION = '1.5.0'
ENTROPY_CHARSET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/\\-_='
ENTROPY_LIMIT = 4.5
KEYWORD_SECRET = '(?=[^\\v\\\'\\"]*)(?=\\w+)[^\\v\\\'\\"]*[^\\v,\\\'\\"`]'

#: Regexes of secret-naming words.
KEYWORD_DENYLIST: tuple[str, ...] = (
    'api_?key',
    'auth_?key',
    'service_?key',
    'account_?key',
    'db_?key',
    'database_?key',
    'priv_?key',
    'private_?key',
    'client_?key',
    'db_?pass',
    'database_?pass',
    'key_?pass',
    'password',
    'passwd',
    'pwd',
    'secret',
    'contraseña',
    'contrasena',
)

#: (pattern, flags, group of the value) of each keyword pattern.
KEYWORD_PATTERNS: tuple[tuple[str, int, int], ...] = (
    ('(api_?key|auth_?key|service_?key|account_?key|db_?key|database_?key|priv_?key|private_?key|client_?key|db_?pass|database_?pass|key_?pass|password|passwd|pwd|secret|contraseña|contrasena)\\w*([]\\\'"]{0,2})?:(\\s*)([\\\'"`])((?=[^\\v\\\'\\"]*)(?=\\w+)[^\\v\\\'\\"]*[^\\v,\\\'\\"`])(\\4)', 34, 5),
    ('([\\\'"`])((?=[^\\v\\\'\\"]*)(?=\\w+)[^\\v\\\'\\"]*[^\\v,\\\'\\"`])(\\1)\\s*[!=]{2,3}\\s*\\w*(api_?key|auth_?key|service_?key|account_?key|db_?key|database_?key|priv_?key|private_?key|client_?key|db_?pass|database_?pass|key_?pass|password|passwd|pwd|secret|contraseña|contrasena)\\w*', 32, 2),
    ('(api_?key|auth_?key|service_?key|account_?key|db_?key|database_?key|priv_?key|private_?key|client_?key|db_?pass|database_?pass|key_?pass|password|passwd|pwd|secret|contraseña|contrasena)\\w*([]\\\'"]{0,2})?\\s*(={1,3}|!==?)\\s*([\\\'"`])((?=[^\\v\\\'\\"]*)(?=\\w+)[^\\v\\\'\\"]*[^\\v,\\\'\\"`])(\\4)', 34, 5),
    ('(api_?key|auth_?key|service_?key|account_?key|db_?key|database_?key|priv_?key|private_?key|client_?key|db_?pass|database_?pass|key_?pass|password|passwd|pwd|secret|contraseña|contrasena)\\w*[^\\s]{0,50}?\\s*([\\\'"`])((?=[^\\v\\\'\\"]*)(?=\\w+)[^\\v\\\'\\"]*[^\\v,\\\'\\"`])(\\2);', 34, 3),
    ('(api_?key|auth_?key|service_?key|account_?key|db_?key|database_?key|priv_?key|private_?key|client_?key|db_?pass|database_?pass|key_?pass|password|passwd|pwd|secret|contraseña|contrasena)\\w*([]\\\'"]{0,2})?\\s*=>?\\s*([\\\'"`])((?=[^\\v\\\'\\"]*)(?=\\w+)[^\\v\\\'\\"]*[^\\v,\\\'\\"`])(\\3)', 34, 4),
    ('(api_?key|auth_?key|service_?key|account_?key|db_?key|database_?key|priv_?key|private_?key|client_?key|db_?pass|database_?pass|key_?pass|password|passwd|pwd|secret|contraseña|contrasena)\\w*([]\\\'"]{0,2})?\\s*(={1,3}|!==?)\\s*([\\\'"`]?)((?=[^\\v\\\'\\"]*)(?=\\w+)[^\\v\\\'\\"]*[^\\v,\\\'\\"`])(\\4)', 34, 5),
)

#: (pattern, flags, hints) of every regex a credential plugin matches with: every match holds one of the hints (gitstore.rules.hints.required).
PLUGIN_PATTERNS: tuple[tuple[str, int, tuple[str, ...] | None], ...] = (
    ('(?:(?<=\\W)|(?<=^))(?:\\[|)(?:"|\\\'|)(?:(?:ibm)?[-_]?cos[-_]?(?:hmac)?|)(?:_|-|)(?:secret[-_]?(?:access)?[-_]?key)(?:"|\\\'|)(?:\\]|)(?: *)(?:=|:|:=|=>| +|::)(?: *)(?:"|\\\'|)([a-f0-9]{48}(?![a-f0-9]))(?:"|\\\'|)', 34, ('secret',)),
    ('(?:(?<=\\W)|(?<=^))(?:\\[|)(?:"|\\\'|)(?:cloudant|cl|clou)(?:_|-|)(?:api|)(?:key|pwd|pw|password|pass|token)(?:"|\\\'|)(?:\\]|)(?: *)(?:=|:|:=|=>| +|::)(?: *)(?:"|\\\'|)([0-9a-f]{64})(?:"|\\\'|)', 34, ('cl',)),
    ('(?:(?<=\\W)|(?<=^))(?:\\[|)(?:"|\\\'|)(?:cloudant|cl|clou)(?:_|-|)(?:api|)(?:key|pwd|pw|password|pass|token)(?:"|\\\'|)(?:\\]|)(?: *)(?:=|:|:=|=>| +|::)(?: *)(?:"|\\\'|)([a-z]{24})(?:"|\\\'|)', 34, ('cl',)),
    ('(?:(?<=\\W)|(?<=^))(?:\\[|)(?:"|\\\'|)(?:ibm(?:_|-|)cloud(?:_|-|)iam|cloud(?:_|-|)iam|ibm(?:_|-|)cloud|ibm(?:_|-|)iam|ibm|iam|cloud|)(?:_|-|)(?:api|)(?:_|-|)(?:key|pwd|password|pass|token)(?:"|\\\'|)(?:\\]|)(?: *)(?:=|:|:=|=>| +|::)(?: *)(?:"|\\\'|)([a-zA-Z0-9_\\-]{44}(?![a-zA-Z0-9_\\-]))(?:"|\\\'|)', 34, ('key', 'pass', 'password', 'pwd', 'token')),
    ('(?:(?<=\\W)|(?<=^))(?:\\[|)(?:"|\\\'|)(?:softlayer|sl)(?:_|-|)(?:api|)(?:_|-|)(?:key|pwd|password|pass|token)(?:"|\\\'|)(?:\\]|)(?: *)(?:=|:|:=|=>| +|::)(?: *)(?:"|\\\'|)([a-z0-9]{64})(?:"|\\\'|)', 34, ('key', 'pass', 'password', 'pwd', 'token')),
    ('(?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[0-9A-Z]{16}', 32, ('3T', 'BIA', 'CCA', 'KIA', 'SIA')),
    ('(?:\\s|=|:|"|^)AKC[a-zA-Z0-9]{10,}(?:\\s|"|$)', 32, ('AKC',)),
    ('(?:\\s|=|:|"|^)AP[\\dABCDEF][a-zA-Z0-9]{8,}(?:\\s|"|$)', 32, ('AP',)),
    ('(?:https?\\:\\/\\/)[\\w\\-]+\\:([0-9a-f]{64})\\@[\\w\\-]+\\.cloudant\\.com', 34, ('.cloudant.com',)),
    ('(?:https?\\:\\/\\/)[\\w\\-]+\\:([a-z]{24})\\@[\\w\\-]+\\.cloudant\\.com', 34, ('.cloudant.com',)),
    ('(?:http|https)://api.softlayer.com/soap/(?:v3|v3.1)/([a-z0-9]{64})', 34, ('com/soap/v3',)),
    ('(?:r|s)k_live_[0-9a-zA-Z]{24}', 32, ('k_live_',)),
    ('(?<![\\w+.-])(?:jdbc:postgresql|jdbc:sqlserver|mongodb\\+srv|jdbc:oracle|postgresql|clickhouse|jdbc:mysql|sqlserver|memcached|cassandra|snowflake|postgres|mariadb|mongodb|couchdb|neo4j\\+s|oracle|rediss|valkey|mysql|mssql|redis|amqps|mqtts|kafka|neo4j|https|smtps|imaps|ldaps|amqp|mqtt|nats|bolt|http|ftps|sftp|smtp|imap|ldap|db2|ftp|ssh|git|svn)://[^\\s:/@?#]*:([^\\s/@?#]+)@[\\w\\[]', 34, ('://',)),
    ('(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9_]{36}', 32, ('gh',)),
    ('(glpat|gldt|glft|glsoat|glrt)-[A-Za-z0-9_\\-]{20,50}(?!\\w)', 32, ('gl',)),
    ("://[^:/\\?\\#\\[\\]@!\\$\\&'\\(\\)\\*\\+,;=\\s]+:([^:/\\?\\#\\[\\]@!\\$\\&'\\(\\)\\*\\+,;=\\s]+)@", 32, ('://',)),
    ('AC[a-z0-9]{32}', 32, ('AC',)),
    ('AccountKey=[a-zA-Z0-9+\\/=]{88}', 32, ('AccountKey=',)),
    ('BEGIN DSA PRIVATE KEY', 32, ('BEGIN DSA PRIVATE KEY',)),
    ('BEGIN EC PRIVATE KEY', 32, ('BEGIN EC PRIVATE KEY',)),
    ('BEGIN OPENSSH PRIVATE KEY', 32, ('BEGIN OPENSSH PRIVATE KEY',)),
    ('BEGIN PGP PRIVATE KEY BLOCK', 32, ('BEGIN PGP PRIVATE KEY BLOCK',)),
    ('BEGIN PRIVATE KEY', 32, ('BEGIN PRIVATE KEY',)),
    ('BEGIN RSA PRIVATE KEY', 32, ('BEGIN RSA PRIVATE KEY',)),
    ('BEGIN SSH2 ENCRYPTED PRIVATE KEY', 32, ('BEGIN SSH2 ENCRYPTED PRIVATE KEY',)),
    ('GR1348941[A-Za-z0-9_\\-]{20,50}(?!\\w)', 32, ('GR1348941',)),
    ('PuTTY-User-Key-File-2', 32, ('PuTTY-User-Key-File-2',)),
    ('SG\\.[a-zA-Z0-9_-]{22}\\.[a-zA-Z0-9_-]{43}', 32, ('SG.',)),
    ('SK[a-z0-9]{32}', 32, ('SK',)),
    ('[0-9a-z]{32}-us[0-9]{1,2}', 32, ('-us',)),
    ('[MNO][a-zA-Z\\d_-]{23,25}\\.[a-zA-Z\\d_-]{6}\\.[a-zA-Z\\d_-]{27}', 32, ('.',)),
    ('\\/\\/.+\\/:_authToken=\\s*((npm_.+)|([A-Fa-f0-9-]{36})).*', 32, ('/:_authToken=',)),
    ('\\bAuthorization\\s*[:=]\\s*[\'\\"]?(?:Bearer|Token)\\s+([A-Za-z0-9._~+/=-]{4,})', 34, ('authorization',)),
    ('\\bAuthorization\\s*[:=]\\s*[\'\\"]?Basic\\s+([A-Za-z0-9._~+/=-]{4,})', 34, ('authorization',)),
    ('\\d{8,10}:[0-9A-Za-z_-]{35}', 32, (':',)),
    ('aws.{0,20}?(?:key|pwd|pw|password|pass|token).{0,20}?[\\\'\\"]([0-9a-zA-Z/+]{40})[\\\'\\"]', 34, ('aws',)),
    ('eyJ[A-Za-z0-9-_=]+\\.[A-Za-z0-9-_=]+\\.?[A-Za-z0-9-_.+/=]*?', 32, ('eyJ',)),
    ('glagent-[A-Za-z0-9_\\-]{50,1024}(?!\\w)', 32, ('glagent-',)),
    ('glcbt-([0-9a-fA-F]{2}_)?[A-Za-z0-9_\\-]{20,50}(?!\\w)', 32, ('glcbt-',)),
    ('glimt-[A-Za-z0-9_\\-]{25}(?!\\w)', 32, ('glimt-',)),
    ('gloas-[A-Za-z0-9_\\-]{64}(?!\\w)', 32, ('gloas-',)),
    ('glptt-[A-Za-z0-9_\\-]{40}(?!\\w)', 32, ('glptt-',)),
    ('https://hooks\\.slack\\.com/services/T[a-zA-Z0-9_]+/B[a-zA-Z0-9_]+/[a-zA-Z0-9_]+', 98, ('https://hooks.slack.com/services/t',)),
    ('pypi-AgEIcHlwaS5vcmc[A-Za-z0-9-_]{70,}', 32, ('pypi-AgEIcHlwaS5vcmc',)),
    ('pypi-AgENdGVzdC5weXBpLm9yZw[A-Za-z0-9-_]{70,}', 32, ('pypi-AgENdGVzdC5weXBpLm9yZw',)),
    ('sk-[A-Za-z0-9-_]*[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}', 32, ('T3BlbkFJ',)),
    ('sq0csp-[0-9A-Za-z\\\\\\-_]{43}', 32, ('sq0csp-',)),
    ('xox(?:a|b|p|o|s|r)-(?:\\d+-)+[a-z0-9]+', 34, ('xox',)),
)
