"""What edc.ops needs from the trials, called here and provided there (edc.hooks).

user_default_language(user) -> str: the language of a user who never chose one: the `language` of
the sites her study roles cover when they agree on one, else "" (the browser's language then);
provided by trials.protocol (selectors.user_site_language).
"""

from edc.hooks import Hook

user_default_language = Hook("ops.user_default_language", provided_by="trials.protocol")
