-- Nexmark q5's first stage, hot items: bids per auction in sliding windows of 10 s every 2 s.
-- (q5 then keeps each window's auctions with the most bids; the test does that in Rust.)
SELECT auction, COUNT(*) AS num, window_start, window_end
FROM TABLE(HOP(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end
