-- A product's unit cost, for the stock value the metrics show: an integer
-- number of the currency's minor units (cents), never a float, and its
-- ISO 4217 code. The same as migrations/postgres.
CREATE TABLE product_costs (
    product_id VARCHAR(255) NOT NULL PRIMARY KEY REFERENCES inventory (product_id),
    currency CHAR(3) NOT NULL,
    unit_cost_minor BIGINT NOT NULL,
    CONSTRAINT product_costs_currency CHECK (length(currency) = 3 AND currency = upper(currency)),
    CONSTRAINT product_costs_range CHECK (unit_cost_minor BETWEEN 0 AND 1000000000000)
);
