"""The whole URL map of the panel in one list; every route is named for url_for."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from .pages import addresses, autoconfig, domains, logins, queue, session, spam, twofactor

GET_POST = ["GET", "POST"]
A = "/domains/{domain}/email/{address}"

routes: list[BaseRoute] = [
    Route("/login", session.login, name="login", methods=GET_POST),
    Route("/logout", session.logout, name="logout", methods=["POST"]),
    Route("/logout/others", session.logout_others, name="logout_others", methods=["POST"]),
    Route("/login/2fa", twofactor.login_2fa, name="login_2fa", methods=GET_POST),
    Route("/settings/2fa", twofactor.settings, name="twofactor", methods=GET_POST),
    Route("/me", session.me, name="me", methods=GET_POST),
    Route("/me/mobileconfig", session.me_mobileconfig, name="me_mobileconfig"),
    # Service overview: the domain list
    Route("/", domains.overview, name="overview", methods=GET_POST),
    Route("/domains/{domain}", domains.domain_home, name="domain"),
    Route("/domains/{domain}/delete", domains.domain_delete, name="domain_delete", methods=["POST"]),
    # Email > Overview > Email, the three dots, Edit settings / Advanced settings
    Route("/domains/{domain}/email", addresses.addresses, name="addresses", methods=GET_POST),
    Route(A + "/edit", addresses.edit, name="edit", methods=GET_POST),
    Route(A + "/delete", addresses.delete, name="delete", methods=["POST"]),
    Route(A + "/devices", addresses.devices, name="devices"),
    Route(A + "/mobileconfig", addresses.mobileconfig, name="mobileconfig"),
    Route(A + "/filters", addresses.filters, name="filters", methods=GET_POST),
    Route(A + "/app-passwords", addresses.app_passwords, name="app_passwords", methods=GET_POST),
    Route(A + "/app-passwords/{app_id:int}/delete", addresses.app_password_delete, name="app_password_delete",
          methods=["POST"]),
    Route("/domains/{domain}/aliases", domains.aliases, name="aliases", methods=GET_POST),
    Route("/domains/{domain}/aliases/{alias}/delete", domains.alias_delete, name="alias_delete",
          methods=["POST"]),
    Route("/domains/{domain}/protocols", domains.protocols, name="protocols", methods=GET_POST),
    # Spam filter (issue 15): the domain's page, an address's page, and their forms
    Route("/domains/{domain}/spam-filter", spam.spam_filter, name="spam_filter", methods=GET_POST),
    Route("/domains/{domain}/spam-filter/junk-score", spam.junk_score, name="spam_junk_score", methods=["POST"]),
    Route("/domains/{domain}/spam-filter/senders", spam.sender_add, name="spam_sender_add", methods=["POST"]),
    Route("/domains/{domain}/spam-filter/senders/remove/{kind}/{entry:path}", spam.sender_remove,
          name="spam_sender_remove", methods=["POST"]),
    Route(A + "/spam", spam.address_spam, name="address_spam"),
    Route(A + "/spam/junk-score", spam.junk_score, name="address_spam_junk_score", methods=["POST"]),
    Route(A + "/spam/senders", spam.sender_add, name="address_spam_sender_add", methods=["POST"]),
    Route(A + "/spam/senders/remove/{kind}/{entry:path}", spam.sender_remove, name="address_spam_sender_remove",
          methods=["POST"]),
    Route("/domains/{domain}/client-settings", domains.client_settings, name="client_settings"),
    Route("/domains/{domain}/dns", domains.dns, name="dns"),
    # Panel logins and API tokens
    Route("/settings/logins", logins.logins, name="logins", methods=GET_POST),
    Route("/settings/logins/{username}/delete", logins.login_delete, name="login_delete", methods=["POST"]),
    Route("/settings/tokens", logins.tokens, name="tokens", methods=GET_POST),
    Route("/settings/tokens/{token_id:int}/delete", logins.token_delete, name="token_delete", methods=["POST"]),
    # Mail queue (issue #7; administrators only)
    Route("/queue", queue.queue_list, name="queue"),
    Route("/queue/retry", queue.queue_retry_all, name="queue_retry_all", methods=["POST"]),
    Route("/queue/{queue_id:int}", queue.queue_entry, name="queue_entry"),
    Route("/queue/{queue_id:int}/retry", queue.queue_retry, name="queue_retry", methods=["POST"]),
    Route("/queue/{queue_id:int}/delete", queue.queue_delete, name="queue_delete", methods=["POST"]),
    # Automatic client configuration (public)
    Route("/.well-known/autoconfig/mail/config-v1.1.xml", autoconfig.autoconfig, name="autoconfig_wellknown"),
    Route("/mail/config-v1.1.xml", autoconfig.autoconfig, name="autoconfig"),
    Route("/autodiscover/autodiscover.xml", autoconfig.autodiscover, name="autodiscover", methods=GET_POST),
    Route("/Autodiscover/Autodiscover.xml", autoconfig.autodiscover, name="autodiscover_ms", methods=GET_POST),
]

