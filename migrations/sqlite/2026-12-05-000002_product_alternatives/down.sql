DROP TABLE product_alternatives;
