-- The Nexmark bid stream as a table: one JSON object per bid (nexmark-flink's field names),
-- event time `dateTime` (epoch ms in the JSON), at most 4 s out of order. The tests bind the
-- in-process generator's bids to it from Rust (SqlContext::bind_json); from Kafka, bind the
-- topic's stream the same way.
CREATE TABLE bid (
    auction BIGINT,
    bidder BIGINT,
    price BIGINT,
    channel STRING,
    url STRING,
    `dateTime` TIMESTAMP(3),
    extra STRING,
    WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND
) WITH (
    'connector' = 'kafka',
    'topic' = 'nexmark-bid',
    'format' = 'json'
);
