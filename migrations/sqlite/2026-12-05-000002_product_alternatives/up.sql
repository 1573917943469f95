-- Each product's alternatives, in order (rank from 0): what a refusal for
-- lack of stock suggests. The same as migrations/postgres. A product is
-- never its own alternative, names each once, and only existing products.
CREATE TABLE product_alternatives (
    product_id VARCHAR(255) NOT NULL REFERENCES inventory (product_id),
    rank INTEGER NOT NULL,
    alternative_id VARCHAR(255) NOT NULL REFERENCES inventory (product_id),
    PRIMARY KEY (product_id, rank),
    CONSTRAINT product_alternatives_once UNIQUE (product_id, alternative_id),
    CONSTRAINT product_alternatives_not_itself CHECK (alternative_id <> product_id),
    CONSTRAINT product_alternatives_rank CHECK (rank >= 0)
);
