-- Optional: where WhatsApp order confirmations go (E.164, e.g. +6281234567890).
ALTER TABLE users ADD COLUMN phone text CHECK (phone ~ '^\+[1-9][0-9]{7,14}$');
