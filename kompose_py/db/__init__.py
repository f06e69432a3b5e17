"""Database commands: the engine-neutral safety logic (lock, export, restore with journal and
swap, recovery, upkeep) above how a server is reached (reach.py) and PostgreSQL's own parts
(postgres/)."""
