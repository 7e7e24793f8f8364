-- Per bidder and tumbling 10 s window: bids, total, mean, lowest and highest price, and the
-- number of distinct auctions bid on.
SELECT
    window_start,
    window_end,
    bidder,
    COUNT(*) AS bids,
    SUM(price) AS total,
    AVG(CAST(price AS DOUBLE)) AS mean_price,
    MIN(price) AS lowest,
    MAX(price) AS highest,
    COUNT(DISTINCT auction) AS auctions
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, bidder
