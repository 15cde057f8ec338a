CREATE DATABASE prefect OWNER matscreen;
