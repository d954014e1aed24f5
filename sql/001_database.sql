-- The engine's database. `scrm init` substitutes {database} (default: scrm).
CREATE DATABASE IF NOT EXISTS {database};
