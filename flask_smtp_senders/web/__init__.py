"""The Senders pages' and the JSON API's parts: forms, the guard (authorisation, CSRF,
rate limits), the problems the API answers with and the response headers."""
