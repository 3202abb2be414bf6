"""The secrets vault: envelope-encrypted, versioned, policy-guarded, audited secrets."""
