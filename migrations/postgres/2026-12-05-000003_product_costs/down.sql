DROP TABLE product_costs;
