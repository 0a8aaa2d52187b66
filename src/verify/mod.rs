//! Running models (tract): the `check` command, `detect`, and the image side of both
//! (letterbox preprocessing by the family's convention, drawing).
pub mod check;
pub mod detect;
pub mod image;
pub mod run;
