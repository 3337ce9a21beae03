"""Live network checks: DNS, TCP 25, SMTP, STARTTLS and certificates."""
