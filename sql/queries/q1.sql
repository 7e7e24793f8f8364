-- Nexmark q1, currency conversion: every bid with its price in euros (x 0.908), as a whole
-- number (Flink keeps a DECIMAL; the reference Rust query truncates, so the cast does too).
SELECT auction, bidder, CAST(0.908 * price AS BIGINT) AS price, `dateTime` FROM bid
