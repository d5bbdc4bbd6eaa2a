//! The product catalog: products (`/v1/products`) and customers (`/v1/customers`), one file
//! each. (The PostgreSQL system catalog, which shows the RLS wall, is tested in `rls`.)

mod customers;
mod products;
