-- Nexmark q7's window stage: the highest price of each tumbling 10 s window.
SELECT window_start, MAX(price) AS price
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))
GROUP BY window_start, window_end
